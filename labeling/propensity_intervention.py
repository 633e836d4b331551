"""Position bias from randomized swap interventions (``method="intervention"``).

Builds the K x K table of clicks and impressions by (ranker position, shown position) from
the log's counts (:func:`intervention_counts`, which add up over parts of a log) and fits the
all-pairs maximum-likelihood estimator on it by EM (Joachims et al. 2017, Agarwal et al.
2019). The method, its evidence and its null rules are
described in :mod:`labeling.propensity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from labeling.propensity_em import _pbm_em
from labeling.propensity_estimate import PropensityEstimate, _curve, _ranges, _with_clicks


@dataclass
class _InterventionTable:
    n: np.ndarray  # (K, K) impressions by ranker position j (rows) and shown position k
    clicks: np.ndarray  # (K, K)
    evidence: np.ndarray  # (K,) moved impressions into or out of each position
    linked: np.ndarray  # (K,) bool: connected to position 1 through moved cells
    randomized_requests: int
    dropped: int  # randomized rows without a usable ranker_position


def intervention_counts(impressions: pl.DataFrame) -> pl.DataFrame | None:
    """The counting step of the intervention estimator: impressions per (randomized, ranker
    position, shown position, click), whole numbers that add up over parts of a log; None
    where the log has no ``randomized``, ``ranker_position`` or ``position`` column."""
    needed = ("randomized", "ranker_position", "position", "click")
    if any(column not in impressions.columns for column in needed):
        return None
    return impressions.group_by(
        randomized=pl.col("randomized").cast(pl.Int8).fill_null(0) > 0,
        ranker_position=pl.col("ranker_position").cast(pl.Int32).fill_null(0),
        position=pl.col("position").cast(pl.Int32),
        click=pl.col("click").cast(pl.Int8).fill_null(0) > 0,
    ).agg(pl.len().cast(pl.Int64).alias("impressions"))


def randomized_requests(impressions: pl.DataFrame) -> int:
    """How many requests were randomized (0 without the column; -1 without request ids)."""
    if "randomized" not in impressions.columns:
        return 0
    if "request_id" not in impressions.columns:
        return -1
    return impressions.filter(pl.col("randomized").cast(pl.Int8) > 0)["request_id"].n_unique()


def _intervention_table(
    counts: pl.DataFrame | None, k: int, requests: int
) -> tuple[_InterventionTable | None, str | None]:
    """The K x K click table from :func:`intervention_counts` (``requests``: how many were
    randomized), or None and why the log cannot give one."""
    if counts is None:
        return None, "the log has no 'randomized' and 'ranker_position' columns"
    flag = counts["randomized"].to_numpy()
    if not flag.any():
        return None, "the log has no randomized requests"
    shown = counts["position"].to_numpy().astype(np.int64)
    ranked = counts["ranker_position"].to_numpy().astype(np.int64)
    clicked = counts["click"].to_numpy()
    rows = counts["impressions"].to_numpy().astype(np.float64)  # how many rows each count is
    usable_rank = (ranked >= 1) & (ranked <= k)
    dropped = int(rows[flag & ~usable_rank].sum())
    j = np.where(flag, ranked, shown)
    keep = (shown <= k) & (~flag | usable_rank)
    # Counts left out go to an extra bin, k * k, dropped below.
    cell = np.where(keep, (j - 1) * k + (shown - 1), k * k)
    moved = flag & keep & (j != shown)
    if not moved.any():
        return None, "randomized requests moved no item within the positions estimated"

    def summed(where: np.ndarray) -> np.ndarray:
        return np.bincount(cell[where], rows[where], k * k + 1)[:-1].reshape(k, k)

    n, clicks = summed(np.ones(len(cell), dtype=bool)), summed(clicked)
    moved_cells = summed(moved)
    evidence = np.bincount(shown[moved] - 1, rows[moved], k) + np.bincount(
        j[moved] - 1, rows[moved], k
    )
    linked = _linked_to_first(moved_cells > 0)
    table = _InterventionTable(n, clicks, evidence.astype(np.int64), linked, requests, dropped)
    return table, None


def _linked_to_first(adjacent: np.ndarray) -> np.ndarray:
    """Positions connected to position 1 in the graph whose edges are moved cells (j, k)."""
    k = len(adjacent)
    edges = adjacent | adjacent.T
    linked = np.zeros(k, dtype=bool)
    linked[0] = True
    frontier = linked.copy()
    while frontier.any():
        reached = edges[frontier].any(axis=0) & ~linked
        linked |= reached
        frontier = reached
    return linked


def _intervention_estimate(
    table: _InterventionTable, notes: list[str], tol: float
) -> PropensityEstimate:
    k = len(table.evidence)
    j_index, k_index = np.nonzero(table.n > 0)
    theta, _, iterations, converged = _pbm_em(
        j_index,
        k_index,
        table.n[j_index, k_index],
        table.clicks[j_index, k_index],
        k,
        k,
        prior_strength=0.0,
        prior_mean=None,
        leave_out=False,
        tol=min(tol, 1e-7),
        max_iter=20_000,
    )
    propensity = theta / theta[0]
    evidenced = table.linked & (table.evidence > 0)
    requests = (
        f"{table.randomized_requests:,} randomized requests, "
        if table.randomized_requests >= 0
        else ""
    )
    notes.append(
        f"intervention: {requests}{int(table.evidence.sum()) // 2:,} moved impressions, "
        f"{int(table.n.sum()):,} impressions in the {k}x{k} (ranker position, shown position) "
        f"table; all-pairs maximum likelihood by EM, {iterations} iterations"
        + ("" if converged else " (not converged)")
    )
    if table.dropped:
        notes.append(
            f"intervention: {table.dropped:,} randomized rows without a ranker_position in "
            f"1..{k} were left out"
        )
    missing = np.flatnonzero(~evidenced) + 1
    if len(missing):
        notes.append(
            "intervention: no randomized evidence linking position(s) "
            f"{_ranges(missing)} to position 1; their intervention estimate is null"
        )
    known = _with_clicks(evidenced, table.clicks.sum(axis=0), notes)
    curve = _curve(propensity, known, table.evidence, "intervention")
    return PropensityEstimate(curve, "intervention", notes)
