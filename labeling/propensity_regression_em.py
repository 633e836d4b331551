"""Position bias by regression-EM (``method="regression_em"``), for logs without interventions.

Counts the log's (pair, position) cells (:func:`click_cells`: impressions and clicks, which
add up over parts of a log), keeps the pairs shown at two or more positions (seeded
subsample beyond ``max_cells``) and runs leave-one-cell-out EM on them, optionally with
a feature regression for the relevance prior (Wang et al. 2018). The method, its settings and
its limits are described in :mod:`labeling.propensity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from labeling.propensity_em import _EPS, _pbm_em
from labeling.propensity_estimate import PropensityEstimate, _curve, _ranges, _with_clicks

if TYPE_CHECKING:
    from labeling.log_counts import RowCounter


@dataclass
class _Cells:
    pair: np.ndarray  # int64 pair index of each (pair, position) cell, 0..n_pairs - 1
    position: np.ndarray  # int64 0-based position
    n: np.ndarray  # float64 impressions
    clicks: np.ndarray  # float64 clicks
    n_pairs: int
    codes: np.ndarray  # int64 code of each pair (pair_code), in pair index order


Vocabulary = tuple[pl.Series, ...]  # per pair column, its distinct values, sorted


def pair_vocabulary(impressions: pl.DataFrame, pair_columns: tuple[str, ...]) -> Vocabulary:
    """The distinct values of each pair column, sorted: what codes the pairs of
    :func:`click_cells`. The vocabularies of parts of a log add up
    (:func:`add_vocabularies`) to the whole log's."""
    return tuple(impressions[c].drop_nulls().unique().sort() for c in pair_columns)


def add_vocabularies(parts: list[Vocabulary]) -> Vocabulary:
    return tuple(pl.concat(values).unique().sort() for values in zip(*parts, strict=True))


def click_cells(
    impressions: pl.DataFrame, pair_columns: tuple[str, ...], vocabulary: Vocabulary
) -> pl.DataFrame:
    """The counting step of regression-EM: impressions and clicks per (pair, position), the
    pair by its code in ``vocabulary`` (the log's, or the whole log's when this is a part).
    Whole numbers, so the cells of parts of a log add up (:func:`add_click_cells`).

    One sort of packed int64 keys: a 20M-row log costs a few hundred MB.
    """
    if impressions.height == 0:  # a part of a log may hold none of the rows counted
        return pl.DataFrame(
            schema=dict.fromkeys(("_code", "position", "impressions", "click"), pl.Int64)
        )
    code = pair_code(impressions, pair_columns, vocabulary)
    k = int(impressions["position"].max())
    # Pack (pair, position, click) into the pair code in place: one int64 per row.
    packed = code
    packed *= k
    packed += impressions["position"].cast(pl.Int64).to_numpy() - 1
    packed <<= 1
    packed |= (impressions["click"].cast(pl.Int8).fill_null(0) > 0).to_numpy()
    packed.sort()
    cell_key = packed >> 1
    starts = np.flatnonzero(np.concatenate(([True], cell_key[1:] != cell_key[:-1])))
    cell_key = cell_key[starts]
    return pl.DataFrame(
        {
            "_code": cell_key // k,
            "position": cell_key % k + 1,
            "impressions": np.diff(np.append(starts, len(packed))),
            "click": np.add.reduceat(packed & 1, starts),
        }
    )


def add_click_cells(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The :func:`click_cells` of a log from those of its parts."""
    return pl.concat(parts).group_by("_code", "position").agg(pl.col("impressions", "click").sum())


def pair_code(frame: pl.DataFrame, columns: tuple[str, ...], vocabulary: Vocabulary) -> np.ndarray:
    """One int64 per row, in the order of the pair's values: each column's rank in its
    vocabulary (0 for null), combined. Every part of a log coded with the whole log's
    vocabulary gets the same codes."""
    span = 2 * int(frame["position"].max() or 1)  # room for click_cells' packing
    key = np.zeros(frame.height, dtype=np.int64)
    cardinality = 1
    for column, values in zip(columns, vocabulary, strict=True):
        codes, size = _codes(frame[column], values)
        cardinality *= size
        if cardinality * span >= 2**62:
            raise ValueError(
                f"regression-EM: too many distinct ({', '.join(columns)}) to code; "
                "choose fewer pair_columns"
            )
        key = key * size + codes
    return key


def _codes(series: pl.Series, values: pl.Series) -> tuple[np.ndarray, int]:
    """Codes of ``series`` in the order of ``values`` (its sorted distinct values), 0 for
    null, and their range."""
    codes = np.zeros(len(series), dtype=np.int64)
    present = series.is_not_null().to_numpy()
    known = series.drop_nulls()
    if series.dtype == pl.String:
        ranks, size = known.cast(pl.Enum(values)).to_physical().to_numpy(), len(values)
    elif series.dtype.is_integer() and len(values) and values[-1] - values[0] < 4 * len(values):
        low = values[0]  # dense enough: the value's offset is its code, no search needed
        ranks, size = known.to_numpy() - low, values[-1] - low + 1
    else:
        ranks, size = np.searchsorted(values.to_numpy(), known.to_numpy()), len(values)
    codes[present] = ranks + 1
    return codes, int(size) + 1


def _regression_em_estimate(
    counter: RowCounter,
    k: int,
    notes: list[str],
    *,
    pair_columns: tuple[str, ...],
    prior_strength: float,
    feature_columns: tuple[str, ...] | None,
    regressor,
    regression_rounds: int,
    tol: float,
    max_iter: int,
    max_cells: int,
    seed: int,
) -> PropensityEstimate:
    """Regression-EM on the cells ``counter`` counts; features need its rows."""
    missing = [c for c in (*pair_columns, *(feature_columns or ())) if c not in counter.columns]
    if missing:
        raise ValueError(
            f"cannot run regression-EM: the impressions lack column(s) {', '.join(missing)}"
        )
    rows = counter.rows  # None on a cluster
    if feature_columns and rows is None:
        raise ValueError("regression-EM with feature_columns needs the impressions' rows")
    vocabulary, counted = counter.cells(pair_columns)
    cells = _aggregate_cells(counted, k)
    cells_in_pair = np.bincount(cells.pair, minlength=cells.n_pairs)
    informative = cells_in_pair[cells.pair] > 1
    n_informative_pairs = int((cells_in_pair > 1).sum())
    if n_informative_pairs == 0:
        notes.append(
            "regression-EM: no pair was shown at two positions; fitting all pairs, so the "
            "propensities lean on the Beta prior and follow the raw click-rate curve"
        )
        informative = np.ones(len(cells.pair), dtype=bool)
    chosen = _subsample_pairs(cells, informative, max_cells, seed, notes)
    pair_ids, pair = np.unique(cells.pair[chosen], return_inverse=True)
    position, n, clicks = cells.position[chosen], cells.n[chosen], cells.clicks[chosen]
    n_pairs = len(pair_ids)

    ctr = np.bincount(position, clicks, k) / np.maximum(np.bincount(position, n, k), 1)
    theta = np.clip(0.5 * ctr / max(ctr[0], _EPS), 0.01, 0.5) if ctr[0] > 0 else None
    settings = dict(leave_out=True, tol=tol, max_iter=max_iter)
    total_iterations, converged = 0, True
    if feature_columns:
        row_pair = _row_pairs(rows, pair_columns, vocabulary, k, cells)
        features = _pair_features(rows, feature_columns, k, row_pair, cells.n_pairs, pair_ids)
        prior_mean = None
        for _ in range(max(1, regression_rounds)):
            theta, relevance, iterations, converged = _pbm_em(
                pair,
                position,
                n,
                clicks,
                n_pairs,
                k,
                prior_strength=prior_strength,
                prior_mean=prior_mean,
                theta=theta,
                **settings,
            )
            total_iterations += iterations
            target = relevance / np.maximum(np.bincount(pair, n, n_pairs), _EPS)
            prior_mean = _fit_regression(
                features, target, np.bincount(pair, n, n_pairs), regressor, seed
            )
        theta, _, iterations, converged = _pbm_em(
            pair,
            position,
            n,
            clicks,
            n_pairs,
            k,
            prior_strength=prior_strength,
            prior_mean=prior_mean,
            theta=theta,
            **settings,
        )
        total_iterations += iterations
        gamma_note = (
            f"gamma prior mean regressed on {', '.join(feature_columns)} "
            f"({max(1, regression_rounds)} rounds)"
        )
    else:
        theta, _, total_iterations, converged = _pbm_em(
            pair,
            position,
            n,
            clicks,
            n_pairs,
            k,
            prior_strength=prior_strength,
            prior_mean=None,
            theta=theta,
            **settings,
        )
        gamma_note = "gamma per pair"
    evidence = np.bincount(position, n, k).astype(np.int64)
    propensity = theta / theta[0]
    shown_at = " shown at 2+ positions" if n_informative_pairs else ""
    notes.append(
        f"regression-EM: {int(n.sum()):,} impressions in {len(n):,} (pair, position) cells of "
        f"{n_pairs:,} pairs ({', '.join(pair_columns)}){shown_at}; {gamma_note}, Beta prior "
        f"strength {prior_strength:g}, leave-one-cell-out; {total_iterations} iterations"
        + ("" if converged else " (not converged: max_iter)")
    )
    missing_positions = np.flatnonzero(evidence == 0) + 1
    if len(missing_positions):
        notes.append(
            f"regression-EM: no informative impressions at position(s) "
            f"{_ranges(missing_positions)}; their regression-EM estimate is null"
        )
    known = _with_clicks(evidence > 0, np.bincount(position, clicks, k), notes)
    curve = _curve(propensity, known, evidence, "regression_em")
    return PropensityEstimate(curve, "regression_em", notes)


def _subsample_pairs(
    cells: _Cells, informative: np.ndarray, max_cells: int, seed: int, notes: list[str]
) -> np.ndarray:
    """Indices of the cells EM uses: the informative ones, or a seeded subset of their pairs."""
    chosen = np.flatnonzero(informative)
    if len(chosen) <= max_cells:
        return chosen
    pairs = np.unique(cells.pair[chosen])
    share = max_cells / len(chosen)
    rng = np.random.default_rng(seed)
    keep_pair = np.zeros(cells.n_pairs, dtype=bool)
    keep_pair[rng.choice(pairs, size=max(1, int(len(pairs) * share)), replace=False)] = True
    subset = chosen[keep_pair[cells.pair[chosen]]]
    notes.append(
        f"regression-EM: {len(chosen):,} informative cells exceed max_cells={max_cells:,}; "
        f"using a random {share:.1%} of their pairs (seed {seed})"
    )
    return subset


def _aggregate_cells(counts: pl.DataFrame, k: int) -> _Cells:
    """The (pair, position) cells at positions 1..K, in the order of their pair's values, then
    position (whatever the order of ``counts``, whose rows are unique cells)."""
    frame = counts.filter(pl.col("position") <= k)
    code, position = frame["_code"].to_numpy(), frame["position"].to_numpy()
    step, turn = np.diff(code), np.diff(position)
    if not np.all((step > 0) | ((step == 0) & (turn > 0))):  # counted in one process: sorted
        order = np.lexsort((position, code))
        frame, code, position = frame[order], code[order], position[order]
    new_pair = np.concatenate(([True], code[1:] != code[:-1]))
    pair = np.cumsum(new_pair) - 1
    return _Cells(
        pair,
        position.astype(np.int64) - 1,
        frame["impressions"].to_numpy().astype(np.float64),
        frame["click"].to_numpy().astype(np.float64),
        int(pair[-1]) + 1,
        code[new_pair],
    )


def _row_pairs(
    rows: pl.DataFrame, pair_columns: tuple[str, ...], vocabulary, k: int, cells: _Cells
) -> np.ndarray:
    """The pair index of each of ``rows`` at positions 1..K."""
    kept = rows.filter(pl.col("position") <= k)
    return np.searchsorted(cells.codes, pair_code(kept, pair_columns, vocabulary))


def _pair_features(
    rows: pl.DataFrame,
    columns: tuple[str, ...],
    k: int,
    row_pair: np.ndarray,
    n_pairs: int,
    pair_ids: np.ndarray,
) -> np.ndarray:
    """(pairs used, features): each pair's mean of every feature column over its rows at
    positions 1..K (NaN when missing)."""
    frame = rows.filter(pl.col("position") <= k).select(columns)
    out = np.full((len(pair_ids), len(columns)), np.nan)
    for i, column in enumerate(columns):
        series = frame[column]
        if not (series.dtype.is_numeric() or series.dtype == pl.Boolean):
            raise ValueError(
                f"regression-EM features must be numeric: '{column}' is {series.dtype}"
            )
        values = series.cast(pl.Float64).fill_nan(None).to_numpy()
        present = ~np.isnan(values)
        sums = np.bincount(row_pair[present], values[present], n_pairs)[pair_ids]
        counts = np.bincount(row_pair[present], minlength=n_pairs)[pair_ids]
        out[:, i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def _fit_regression(
    features: np.ndarray, target: np.ndarray, weight: np.ndarray, regressor, seed: int
) -> np.ndarray:
    """The regression step: pairs' relevance posteriors on their features, clipped to (0, 1)."""
    from sklearn.base import clone
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = (
        HistGradientBoostingRegressor(max_iter=100, min_samples_leaf=20, random_state=seed)
        if regressor is None
        else clone(regressor)
    )
    model.fit(features, target, sample_weight=weight)
    return np.clip(np.asarray(model.predict(features), dtype=np.float64), 1e-4, 1 - 1e-4)
