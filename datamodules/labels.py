"""The ``relevance`` task of a log: labels derived without annotation, or the behavioural grade.

``labels.relevance: derived`` (the default) runs ``labeling.derive_labels`` with the query-
product similarity of the text encoder. Labels are made the way an annotator would be given
the data: training rows are labelled from the training part of the log only, validation rows
from the training and validation parts, and test rows (the evaluation targets, which no model
trains or stops on) from the whole log. With a Dask cluster, the log's counts are made on its
workers (``datamodules/cluster.py``); the labels are the same.
``labels.relevance: behavioural`` is the deepest funnel step reached (0-3), the setting of the
"without relevance labels" ablation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import polars as pl

from datamodules.cluster import DaskCluster, Partitions
from datamodules.tables import SearchLog
from datamodules.text_encoding import EncoderConfig, TextEncoder, pair_similarity
from labeling.behavioural import behavioural_grade
from labeling.click_rates import add_pair_sums, weighted_pair_sums
from labeling.log_counts import COUNTED_COLUMNS, LogCounts, add_counts, log_counts, visible_part
from labeling.propensity_regression_em import (
    add_click_cells,
    add_vocabularies,
    click_cells,
    pair_vocabulary,
)
from labeling.relevance import DerivedLabels, LabelingConfig, derive_labels
from labeling.sampling import SamplingConfig

if TYPE_CHECKING:
    from datamodules.streamed_log import LogParts

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
    pairs = log.impressions.select("query", "product_id").unique()
    return similarities_of_pairs(pairs, log.products, encoder, progress)


def similarities_of_pairs(
    pairs: pl.DataFrame, products: pl.DataFrame, encoder: TextEncoder, progress: bool = False
) -> pl.DataFrame:
    """:func:`pair_similarities` of distinct (``query``, ``product_id``) ``pairs``."""
    pairs = pairs.join(products.select("product_id", "title"), on="product_id", how="left").sort(
        "query", "product_id"
    )
    similarity = pair_similarity(
        encoder, pairs["query"].to_list(), pairs["title"].to_list(), progress=progress
    )
    return pairs.select("query", "product_id").with_columns(
        similarity=pl.Series(similarity, dtype=pl.Float64)
    )


def label_log(
    impressions: pl.DataFrame | PartsCounter,
    similarity: pl.DataFrame | None,
    config: LabelConfig,
    cluster: DaskCluster | None = None,
) -> DerivedLabels:
    """Derived labels of all (query, product) pairs in ``impressions`` (or read through a
    counter); with a ``cluster``, the impressions are counted on its workers."""
    if cluster is not None and isinstance(impressions, pl.DataFrame):
        everything = impressions.with_columns(_split=pl.lit("all"))
        impressions = _cluster_counters(cluster, everything)(["all"])
    return derive_labels(
        impressions, similarity if config.labeling.use_similarity else None, config.labeling
    )


def relevance_labels(
    log: SearchLog,
    assignment: pl.DataFrame,
    config: LabelConfig,
    similarity: pl.DataFrame | None,
    cluster: DaskCluster | None = None,
) -> pl.Series:
    """The ``relevance`` label of every impression, in the impressions' row order; with a
    ``cluster``, the log is counted on its workers."""
    impressions = log.impressions
    if config.relevance == "behavioural":
        return behavioural_grade(impressions)
    split = impressions.select("request_id").join(
        assignment, on="request_id", how="left", maintain_order="left"
    )["split"]
    if cluster is not None:  # its counts, on the workers
        counters = _cluster_counters(cluster, impressions.with_columns(split.alias("_split")))
        return split_grades(impressions, split, split_labellings(counters, similarity, config))

    def rows_of(visible: list[str]) -> pl.DataFrame:
        return impressions.filter(split.is_in(visible))

    return split_grades(impressions, split, split_labellings(rows_of, similarity, config))


# Each part is labelled from the log up to and including itself: training rows from the
# training part, validation rows (which early stopping reads) without the test part, and test
# rows, the evaluation targets, from the whole log.
VISIBLE = {"train": ("train",), "val": ("train", "val"), "test": ("train", "val", "test")}


def split_labellings(
    counter_for: Callable, similarity: pl.DataFrame | None, config: LabelConfig
) -> dict[str, DerivedLabels]:
    """Per split, the labels of the pairs made from the part of the log it may see;
    ``counter_for(visible)``: those splits' rows, or a counter of them."""
    return {
        part: label_log(counter_for(list(visible)), similarity, config)
        for part, visible in VISIBLE.items()
    }


def split_grades(
    impressions: pl.DataFrame, split: pl.Series, labellings: dict[str, DerivedLabels]
) -> pl.Series:
    """Each impression's grade from the labels of its split (``split``, in row order)."""
    grades = pl.Series("relevance", [0] * impressions.height, dtype=pl.Int8)
    for part, labelled in labellings.items():
        grades = pl.select(
            pl.when(split == part).then(labelled.for_impressions(impressions)).otherwise(grades)
        ).to_series()
    return grades.cast(pl.Int8).alias("relevance")


def _cluster_counters(cluster: DaskCluster, rows: pl.DataFrame):
    """``visible -> counter`` of those splits of ``rows``, sent to the cluster once."""
    sent = rows.select(c for c in rows.columns if c in (*COUNTED_COLUMNS, "_split"))
    partitions = cluster.scatter(sent, stage="labelling")
    columns = [c for c in sent.columns if c != "_split"]
    return lambda visible: PartsCounter(partitions, columns, tuple(visible))


@dataclass(frozen=True)
class PartsCounter:
    """The counts of a log's ``visible`` splits, made part by part by the functions
    :class:`labeling.log_counts.RowCounter` calls on the whole log, and summed: on a Dask
    cluster's workers (:class:`datamodules.cluster.Partitions`), or in this process over a
    log read a part at a time (:class:`datamodules.streamed_log.LogParts`)."""

    partitions: Partitions | LogParts
    columns: list[str]
    visible: tuple[str, ...]

    @property
    def rows(self) -> None:  # the rows stay on the workers
        return None

    def counts(self) -> LogCounts:
        return self._sum(log_counts, add_counts)

    def cells(self, keys):
        keys = tuple(keys)  # every part coded with the whole log's vocabulary: cells add up
        vocabulary = self._sum(partial(pair_vocabulary, pair_columns=keys), add_vocabularies)
        cells = partial(click_cells, pair_columns=keys, vocabulary=vocabulary)
        return vocabulary, self._sum(cells, add_click_cells)

    def pairs(self, by_position) -> pl.DataFrame:
        return self._sum(partial(weighted_pair_sums, by_position=by_position), add_pair_sums)

    def _sum(self, count, add):
        return self.partitions.sum(partial(visible_part, count=count, visible=self.visible), add)
