"""Position bias by regression-EM (``method="regression_em"``), for logs without interventions.

Aggregates the log to (pair, position) cells, keeps the pairs shown at two or more positions
(seeded subsample beyond ``max_cells``) and runs leave-one-cell-out EM on them, optionally with
a feature regression for the relevance prior (Wang et al. 2018). The method, its settings and
its limits are described in :mod:`labeling.propensity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from labeling.propensity_em import _EPS, _pbm_em
from labeling.propensity_estimate import PropensityEstimate, _curve, _ranges, _with_clicks


@dataclass
class _Cells:
    pair: np.ndarray  # int64 pair index of each (pair, position) cell, 0..n_pairs - 1
    position: np.ndarray  # int64 0-based position
    n: np.ndarray  # float64 impressions
    clicks: np.ndarray  # float64 clicks
    n_pairs: int
    row_pair: np.ndarray | None  # pair index of each kept row (only when features are used)
    kept_rows: np.ndarray | None  # bool mask of the rows kept (position <= K)


def _regression_em_estimate(
    impressions: pl.DataFrame,
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
    missing = [c for c in (*pair_columns, *(feature_columns or ())) if c not in impressions.columns]
    if missing:
        raise ValueError(
            f"cannot run regression-EM: the impressions lack column(s) {', '.join(missing)}"
        )
    cells = _aggregate_cells(impressions, pair_columns, k, with_rows=bool(feature_columns))
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
        features = _pair_features(impressions, feature_columns, cells, pair_ids)
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


def _aggregate_cells(
    impressions: pl.DataFrame, pair_columns: tuple[str, ...], k: int, with_rows: bool
) -> _Cells:
    """(pair, position) cells with impressions and clicks, by one sort of packed int64 keys."""
    kept = None
    frame = impressions
    if int(impressions["position"].max()) > k:
        kept = (impressions["position"] <= k).to_numpy()
        frame = impressions.filter(pl.Series(kept))
    key, cardinality = _pair_codes(frame, pair_columns)
    if cardinality * k * 2 >= 2**62:  # too many distinct pairs to pack: rank them densely
        key = np.unique(key, return_inverse=True)[1].astype(np.int64)
    # Pack (pair, position, click) into the pair key in place: one int64 per row.
    packed = key
    packed *= k
    packed += frame["position"].cast(pl.Int32).to_numpy() - 1
    packed <<= 1
    packed |= (frame["click"].cast(pl.Int8).fill_null(0) > 0).to_numpy()
    if with_rows:
        order = np.argsort(packed, kind="stable")
        ordered = packed[order]
        del packed
    else:
        packed.sort()
        ordered = packed
    cell_key = ordered >> 1
    starts = np.flatnonzero(np.concatenate(([True], cell_key[1:] != cell_key[:-1])))
    n = np.diff(np.append(starts, len(ordered))).astype(np.float64)
    clicks = np.add.reduceat(ordered & 1, starts).astype(np.float64)
    cell_key = cell_key[starts]
    pair_key = cell_key // k
    new_pair = np.concatenate(([True], pair_key[1:] != pair_key[:-1]))
    pair = np.cumsum(new_pair) - 1
    row_pair = None
    if with_rows:
        cell_of_sorted = np.repeat(np.arange(len(starts)), n.astype(np.int64))
        row_pair = np.empty(len(ordered), dtype=np.int64)
        row_pair[order] = pair[cell_of_sorted]
    return _Cells(pair, cell_key % k, n, clicks, int(pair[-1]) + 1, row_pair, kept)


def _pair_codes(frame: pl.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """One int64 code per row for the combination of ``columns``, and its range."""
    key = np.zeros(frame.height, dtype=np.int64)
    cardinality = 1
    for column in columns:
        codes, size = _codes(frame[column])
        if cardinality * size >= 2**62:  # re-densify before the packed key could overflow
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            cardinality = int(key.max()) + 1
        key = key * size + codes
        cardinality *= size
    return key, cardinality


def _codes(series: pl.Series) -> tuple[np.ndarray, int]:
    """Dense-ish integer codes of a column (deterministic: they do not depend on row order)."""
    dtype = series.dtype
    if dtype.is_integer():
        values = series.fill_null(series.min() - 1 if series.null_count() else 0)
        low, high = int(values.min()), int(values.max())
        if high - low < max(4 * series.len(), 1 << 20):
            return values.to_numpy().astype(np.int64) - low, high - low + 1
    if dtype == pl.String:
        categories = series.drop_nulls().unique().sort()
        codes = series.cast(pl.Enum(categories)).to_physical().fill_null(len(categories))
        return codes.to_numpy().astype(np.int64), len(categories) + 1
    codes = series.rank("dense").fill_null(0)
    return codes.to_numpy().astype(np.int64), int(codes.max()) + 1


def _pair_features(
    impressions: pl.DataFrame,
    columns: tuple[str, ...],
    cells: _Cells,
    pair_ids: np.ndarray,
) -> np.ndarray:
    """(pairs used, features): each pair's mean of every feature column (NaN when missing)."""
    frame = impressions.select(columns)
    if cells.kept_rows is not None:
        frame = frame.filter(pl.Series(cells.kept_rows))
    out = np.full((len(pair_ids), len(columns)), np.nan)
    for i, column in enumerate(columns):
        series = frame[column]
        if not (series.dtype.is_numeric() or series.dtype == pl.Boolean):
            raise ValueError(
                f"regression-EM features must be numeric: '{column}' is {series.dtype}"
            )
        values = series.cast(pl.Float64).fill_nan(None).to_numpy()
        present = ~np.isnan(values)
        sums = np.bincount(cells.row_pair[present], values[present], cells.n_pairs)[pair_ids]
        counts = np.bincount(cells.row_pair[present], minlength=cells.n_pairs)[pair_ids]
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
