"""The ``relevance`` task of a log: labels derived without annotation, or the behavioural grade.

``labels.relevance: derived`` (the default) runs ``labeling.derive_labels`` with the query-
product similarity of the text encoder. Labels are made the way an annotator would be given
the data: training rows are labelled from the training part of the log only, validation rows
from the training and validation parts, and test rows (the evaluation targets, which no model
trains or stops on) from the whole log.
``labels.relevance: behavioural`` is the deepest funnel step reached (0-3), the setting of the
"without relevance labels" ablation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import polars as pl

from datamodules.tables import SearchLog
from datamodules.text_encoding import EncoderConfig, TextEncoder, pair_similarity
from labeling.behavioural import behavioural_grade
from labeling.relevance import DerivedLabels, LabelingConfig, derive_labels
from labeling.sampling import SamplingConfig

RELEVANCE_SOURCES = ("derived", "behavioural")


@dataclass(frozen=True)
class LabelConfig:
    relevance: str = "derived"  # derived | behavioural
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self):
        if self.relevance not in RELEVANCE_SOURCES:
            raise ValueError(
                f"labels.relevance must be one of {', '.join(RELEVANCE_SOURCES)}, "
                f"not {self.relevance!r}"
            )


def labels_for(labels: LabelConfig, log: SearchLog) -> LabelConfig:
    """The configured labels, from behaviour alone when products have no title (a judged
    dataset's semi-synthetic clicks, LETOR's): there is no text to compare."""
    if "title" in log.products.columns or not labels.labeling.use_similarity:
        return labels
    return replace(labels, labeling=replace(labels.labeling, use_similarity=False))


def pair_similarities(log: SearchLog, encoder: TextEncoder, progress: bool = False) -> pl.DataFrame:
    """Cosine similarity of query and product title for every (query, product) pair shown."""
    pairs = (
        log.impressions.select("query", "product_id")
        .unique()
        .join(log.products.select("product_id", "title"), on="product_id", how="left")
        .sort("query", "product_id")
    )
    similarity = pair_similarity(
        encoder, pairs["query"].to_list(), pairs["title"].to_list(), progress=progress
    )
    return pairs.select("query", "product_id").with_columns(
        similarity=pl.Series(similarity, dtype=pl.Float64)
    )


def label_log(
    impressions: pl.DataFrame, similarity: pl.DataFrame | None, config: LabelConfig
) -> DerivedLabels:
    """Derived labels of all (query, product) pairs in ``impressions``."""
    return derive_labels(
        impressions, similarity if config.labeling.use_similarity else None, config.labeling
    )


def relevance_labels(
    log: SearchLog,
    assignment: pl.DataFrame,
    config: LabelConfig,
    similarity: pl.DataFrame | None,
) -> pl.Series:
    """The ``relevance`` label of every impression, in the impressions' row order."""
    impressions = log.impressions
    if config.relevance == "behavioural":
        return behavioural_grade(impressions)
    split = impressions.select("request_id").join(
        assignment, on="request_id", how="left", maintain_order="left"
    )["split"]
    # Each part is labelled from the log up to and including itself: training rows from the
    # training part, validation rows (which early stopping reads) without the test part, and
    # test rows, the evaluation targets, from the whole log.
    seen = {"train": ["train"], "val": ["train", "val"], "test": ["train", "val", "test"]}
    grades = pl.Series("relevance", [0] * impressions.height, dtype=pl.Int8)
    for part, visible in seen.items():
        labelled = label_log(impressions.filter(split.is_in(visible)), similarity, config)
        grades = pl.select(
            pl.when(split == part).then(labelled.for_impressions(impressions)).otherwise(grades)
        ).to_series()
    return pl.Series(
        "relevance",
        grades,
        dtype=pl.Int8,
    )
