"""Graded relevance labels 0-4 from the log, without human annotation.

Per (query, product) pair, in four auditable steps (each a column of the ``pairs`` table):

1. **Position bias**: the examination probability of each position is estimated from the
   log (``labeling.propensity``: from randomized swaps where the log has them, else by
   regression-EM), and each impression weighs by its position's propensity.
2. **Debiased, smoothed rates** (``labeling.click_rates``): clicks, add-to-carts and
   purchases over the pair's exposure (its expected examinations), each smoothed with a
   Beta prior fitted to all pairs.
3. **Behaviour score** ``b``: the percentile, among all pairs, of
   ``click_rate + add_to_cart_weight * add_to_cart_rate + purchase_weight * purchase_rate``
   (terms the log lacks drop out). **Similarity score** ``s``: the percentile of the cosine
   similarity of query and product text from the small BERT encoder.
4. **Combination**: with confidence ``c = exposure / (exposure + confidence_exposure)``,
   ``score = w * s + (1 - w) * (c * b + (1 - c) * s)``, ``w = similarity_weight``: a pair
   seen rarely leans on similarity, a pair seen often on behaviour, and similarity keeps a
   floor share ``w`` throughout. Grades are the number of ``grade_cuts`` at or below the
   score (``0.2, 0.4, 0.6, 0.8`` give 0-4 in equal score bands).

Switches for the component ablations: ``debias=False`` (every propensity 1),
``smoothing=False`` (raw ratios) and ``use_similarity=False`` (score = ``b``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from labeling.click_rates import (
    PAIR_KEYS,
    BetaPrior,
    key_vocabulary,
    pair_key,
    pairs_from_sums,
    smoothed_rates,
)
from labeling.log_counts import RowCounter
from labeling.propensity import PropensityEstimate, estimate_propensities, position_propensities


@dataclass(frozen=True)
class LabelingConfig:
    debias: bool = True
    propensity_method: str = "auto"  # auto | intervention | regression_em
    # What to do when the log has no positions: "error", or "no_debias" to go on without.
    missing_positions: str = "error"
    smoothing: bool = True
    use_similarity: bool = True
    similarity_weight: float = 0.3
    confidence_exposure: float = 3.0
    add_to_cart_weight: float = 1.0
    purchase_weight: float = 1.0
    grade_cuts: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)

    def __post_init__(self):
        if self.missing_positions not in ("error", "no_debias"):
            raise ValueError("labeling.missing_positions must be 'error' or 'no_debias'")
        if not 0 <= self.similarity_weight <= 1:
            raise ValueError("labeling.similarity_weight must be between 0 and 1")
        if self.confidence_exposure <= 0:
            raise ValueError("labeling.confidence_exposure must be positive")
        if list(self.grade_cuts) != sorted(self.grade_cuts) or len(self.grade_cuts) != 4:
            raise ValueError("labeling.grade_cuts must be 4 increasing numbers (grades 0-4)")


@dataclass
class DerivedLabels:
    pairs: pl.DataFrame  # one row per (query, product): counts, rates, scores, grade
    propensity: PropensityEstimate | None
    priors: dict[str, dict[int, BetaPrior]]  # behaviour -> position stratum -> prior
    notes: list[str] = field(default_factory=list)

    def for_impressions(self, impressions: pl.DataFrame, name: str = "relevance") -> pl.Series:
        """The grade of each impression's pair, in the impressions' row order."""
        as_text = pl.col("query").cast(pl.String)
        joined = impressions.select(as_text, "product_id").join(
            self.pairs.select(as_text, "product_id", "grade"),
            on=list(PAIR_KEYS),
            how="left",
            maintain_order="left",
        )
        return joined["grade"].fill_null(0).cast(pl.Int8).alias(name)


def derive_labels(
    impressions: pl.DataFrame | RowCounter,
    similarity: pl.DataFrame | None,
    config: LabelingConfig = LabelingConfig(),
) -> DerivedLabels:
    """Graded labels for every (query, product) pair of ``impressions``.

    ``impressions`` may also be read through a counter (:mod:`labeling.log_counts`; a Dask
    cluster's counts its partitions): the labels are the same.
    ``similarity`` has one row per pair: ``query``, ``product_id``, ``similarity``; it may be
    None only with ``use_similarity=False``.
    """
    counter = RowCounter(impressions) if isinstance(impressions, pl.DataFrame) else impressions
    notes: list[str] = []
    propensity = _propensities(counter, config, notes)
    # Each impression weighs by its position's propensity.
    by_position = None if propensity is None else position_propensities(propensity)
    sums = counter.pairs(by_position)
    vocabulary = key_vocabulary(sums)
    pairs, priors = smoothed_rates(
        pairs_from_sums(sums, vocabulary=vocabulary), smoothing=config.smoothing
    )
    for behaviour in ("add_to_cart", "purchase"):
        if behaviour not in counter.columns:
            notes.append(f"the log has no {behaviour}: its term drops out of the score")
    pairs = pairs.with_columns(behaviour_score=_percentile(_behaviour(pairs, config)))
    pairs = _with_similarity(pairs, similarity, vocabulary, config, notes)
    pairs = pairs.with_columns(score=_combined_score(pairs, config))
    pairs = pairs.with_columns(grade=_grades(pairs["score"], config.grade_cuts)).drop("_pair")
    return DerivedLabels(pairs=pairs, propensity=propensity, priors=priors, notes=notes)


def _propensities(
    counter: RowCounter, config: LabelingConfig, notes: list[str]
) -> PropensityEstimate | None:
    if not config.debias:
        notes.append("not debiased: every impression counts as examined")
        return None
    if "position" not in counter.columns:
        if config.missing_positions == "no_debias":
            notes.append("the log has no positions: labels are NOT debiased for position")
            return None
        raise ValueError(
            "the log has no 'position' column, so position bias cannot be estimated; set "
            "labeling.missing_positions: no_debias to label without debiasing"
        )
    estimate = estimate_propensities(counter, method=config.propensity_method)
    notes.extend(estimate.notes)
    return estimate


def _behaviour(pairs: pl.DataFrame, config: LabelingConfig) -> np.ndarray:
    value = pairs["click_rate"].to_numpy().copy()
    for behaviour, weight in (
        ("add_to_cart", config.add_to_cart_weight),
        ("purchase", config.purchase_weight),
    ):
        if f"{behaviour}_rate" in pairs.columns:
            value += weight * pairs[f"{behaviour}_rate"].to_numpy()
    return value


def _percentile(values: np.ndarray | pl.Series) -> pl.Series:
    """Average-rank percentile in (0, 1]: ties share a value, the order is all that counts."""
    # Rounded first: sums taken in another row order differ in the last bits, and must not
    # break ties differently.
    series = pl.Series(values, dtype=pl.Float64).round(10)
    return series.rank(method="average") / max(len(series), 1)


def _with_similarity(pairs, similarity, vocabulary, config: LabelingConfig, notes: list[str]):
    if not config.use_similarity:
        notes.append("similarity not used: the score is behaviour only")
        return pairs.with_columns(
            similarity=pl.lit(None, pl.Float64), similarity_score=pl.lit(None, pl.Float64)
        )
    if similarity is None:
        raise ValueError("labels with similarity need a similarity table (or use_similarity off)")
    # Joined on the integer pair key: several times faster than on strings for big logs.
    keyed = similarity.select(
        pair_key(PAIR_KEYS, vocabulary).alias("_pair"), "similarity"
    ).drop_nulls("_pair")
    joined = pairs.join(keyed, on="_pair", how="left", maintain_order="left")
    missing = joined["similarity"].null_count()
    if missing:
        raise ValueError(f"similarity is missing for {missing} (query, product) pairs")
    return joined.with_columns(similarity_score=_percentile(joined["similarity"]))


def _combined_score(pairs: pl.DataFrame, config: LabelingConfig) -> pl.Expr:
    behaviour = pl.col("behaviour_score")
    if not config.use_similarity:
        return behaviour
    confidence = pl.col("exposure") / (pl.col("exposure") + config.confidence_exposure)
    similarity = pl.col("similarity_score")
    w = config.similarity_weight
    return w * similarity + (1 - w) * (confidence * behaviour + (1 - confidence) * similarity)


def _grades(score: pl.Series, cuts) -> pl.Series:
    grade = np.searchsorted(np.asarray(cuts), score.to_numpy(), side="right")
    return pl.Series("grade", grade, dtype=pl.Int8)
