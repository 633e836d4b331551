"""What labelling reads from a log's rows: counts that add up over parts of the log.

:func:`labeling.relevance.derive_labels` and :func:`labeling.propensity.estimate_propensities`
read a log only through a *counter* (:class:`RowCounter` for rows in this process; a Dask
cluster's counter, ``datamodules/labels.py``, runs the same functions on its partitions):

- :meth:`RowCounter.counts`, always: impressions per position shown, and per (randomized,
  ranker position, shown position, click) for the intervention estimator
  (:class:`LogCounts`);
- :meth:`RowCounter.cells`, only where regression-EM runs: the pair columns' values, then
  impressions and clicks per (pair, position), the pair by its code among those values
  (:func:`labeling.propensity_regression_em.click_cells`);
- :meth:`RowCounter.pairs`, once the propensities are known: per pair, the impressions, the
  exposure and each behaviour's count (:func:`labeling.click_rates.pair_sums`).

Every count is a whole number (the exposure in fixed point), so the counts of parts of a log
that keep each request whole add up to the whole log's exactly, in any order: the labels are
the same bits from one process and from a cluster's workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from labeling.click_rates import weighted_pair_sums
from labeling.propensity_intervention import intervention_counts, randomized_requests
from labeling.propensity_regression_em import Vocabulary, click_cells, pair_vocabulary

# The columns counted; a Dask cluster is sent these only.
COUNTED_COLUMNS = (
    "request_id",
    "query",
    "product_id",
    "position",
    "click",
    "add_to_cart",
    "purchase",
    "randomized",
    "ranker_position",
)


@dataclass(frozen=True)
class LogCounts:
    impressions: int
    positions: pl.DataFrame | None  # position, impressions; None without positions
    interventions: pl.DataFrame | None  # None without randomized and ranker_position
    randomized_requests: int  # -1 without request ids


def log_counts(impressions: pl.DataFrame) -> LogCounts:
    """The :class:`LogCounts` of ``impressions`` (a log, or a part of it of whole requests)."""
    positions = None
    if "position" in impressions.columns:
        positions = impressions.group_by("position").agg(
            pl.len().cast(pl.Int64).alias("impressions")
        )
    return LogCounts(
        impressions=impressions.height,
        positions=positions,
        interventions=intervention_counts(impressions),
        randomized_requests=randomized_requests(impressions),
    )


def add_counts(parts: Sequence[LogCounts]) -> LogCounts:
    """The :class:`LogCounts` of a log from those of its parts."""
    requests = [p.randomized_requests for p in parts]
    return LogCounts(
        impressions=sum(p.impressions for p in parts),
        positions=_added([p.positions for p in parts]),
        interventions=_added([p.interventions for p in parts]),
        randomized_requests=-1 if min(requests) < 0 else sum(requests),
    )


def _added(tables: list[pl.DataFrame | None]) -> pl.DataFrame | None:
    """One table of the ``impressions`` sums per key (every other column)."""
    if tables[0] is None:
        return None
    keys = [c for c in tables[0].columns if c != "impressions"]
    return pl.concat(tables).group_by(keys).agg(pl.col("impressions").sum())


@dataclass(frozen=True)
class RowCounter:
    """A log's counts, from its rows in this process."""

    rows: pl.DataFrame

    @property
    def columns(self) -> list[str]:
        return self.rows.columns

    def counts(self) -> LogCounts:
        return log_counts(self.rows)

    def cells(self, keys: Sequence[str]) -> tuple[Vocabulary, pl.DataFrame]:
        vocabulary = pair_vocabulary(self.rows, tuple(keys))
        return vocabulary, click_cells(self.rows, tuple(keys), vocabulary)

    def pairs(self, by_position: np.ndarray | None) -> pl.DataFrame:
        return weighted_pair_sums(self.rows, by_position)


def visible_part(rows: pl.DataFrame, count: Callable, visible: Sequence[str]):
    """``count`` of the ``rows`` whose ``_split`` is one of ``visible`` (the part of the log a
    split's labels are made from), that column left out."""
    return count(rows.filter(pl.col("_split").is_in(list(visible))).drop("_split"))
