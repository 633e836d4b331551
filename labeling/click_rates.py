"""Per (query, product) behaviour rates, debiased for position and smoothed by a fitted prior.

For every pair the log shows, with ``E`` its *exposure*:

- ``impressions``: how often it was shown;
- ``exposure``: the expected number of examinations, the sum over its impressions of the
  examination probability (propensity) of the position it was shown at. Without debiasing
  every propensity is 1 and ``exposure == impressions``;
- ``clicks``, ``add_to_cart``, ``purchase``: counts of each logged behaviour;
- ``<behaviour>_rate``: ``(count + alpha) / (exposure + alpha + beta)``. Dividing clicks by
  the expected examinations (rather than impressions) is the debiased click rate; the Beta
  prior ``(alpha, beta)`` is fitted to the pairs by maximum likelihood of the beta-binomial
  model, so a pair seen once is pulled towards what pairs like it do rather than to 0 or 1.

"Pairs like it" are pairs the logging ranker placed alike: one prior is fitted per stratum
of the pair's mean logged position (1, 2-3, 4-7, 8-15, ...). A single prior for all pairs
would be wrong in a telling way: the ranker shows its best candidates on top, so rarely
shown pairs are worse than average, and shrinking them to the overall mean would rank a
pair shown once at position 9 above one that was shown ten times at the top and clicked
less often than the average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import betaln, digamma, polygamma

PAIR_KEYS = ("query", "product_id")


@dataclass(frozen=True)
class BetaPrior:
    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def strength(self) -> float:
        """Pseudo-observations the prior is worth."""
        return self.alpha + self.beta


BEHAVIOURS = ("click", "add_to_cart", "purchase")
# Exposure is summed in fixed point: for any propensity above 2^-37, propensity * 2^90 is a
# whole number (a float64 carries 53 significant bits), so the Int128 sum is exact and the
# same whatever the order or the grouping of its terms (parts of a log on a cluster).
_FIXED_POINT = 2.0**90


def pair_counts(
    impressions: pl.DataFrame,
    propensity: pl.Series | None = None,
    keys=PAIR_KEYS,
    vocabulary: dict | None = None,
) -> pl.DataFrame:
    """Impressions, exposure and behaviour counts per pair (one row per pair).

    ``_pair`` is the pair's integer key (:func:`pair_key` with ``vocabulary``, built from
    ``impressions`` when not given), for fast joins.
    """
    return pairs_from_sums(pair_sums(impressions, propensity, keys), keys, vocabulary)


def pair_sums(
    impressions: pl.DataFrame, propensity: pl.Series | None = None, keys=PAIR_KEYS
) -> pl.DataFrame:
    """The counting step of :func:`pair_counts`: per pair, the impressions, their exposure
    (fixed point), each logged behaviour's count and the sum of the positions shown.

    Behaviours are 0/1, as a validated log's, and the exposure is an exact integer, so the
    sums of parts of a log add up to the whole log's exactly, in any order
    (:func:`add_pair_sums`; a Dask cluster counts its partitions apart).
    """
    behaviours = [c for c in BEHAVIOURS if c in impressions.columns]
    positions = ["position"] if "position" in impressions.columns else []
    weight = pl.lit(1.0) if propensity is None else propensity.cast(pl.Float64)
    # Grouped on an integer key of this table's own: much faster and leaner than on strings.
    code = pair_key(keys, key_vocabulary(impressions, keys)).alias("_code")
    frame = impressions.select(code, *keys, *positions, *behaviours).with_columns(
        _propensity=weight
    )
    return (
        frame.group_by("_code")
        .agg(
            *[pl.col(k).first() for k in keys],
            pl.len().cast(pl.Int64).alias("impressions"),
            (pl.col("_propensity") * _FIXED_POINT).cast(pl.Int128).sum().alias("_exposure"),
            *[pl.col(b).cast(pl.Float64).sum() for b in behaviours],
            *[pl.col("position").cast(pl.Int64).sum().alias("_position_sum") for _ in positions],
        )
        .drop("_code")
    )


def add_pair_sums(parts: list[pl.DataFrame], keys=PAIR_KEYS) -> pl.DataFrame:
    """The :func:`pair_sums` of a log from those of its parts."""
    return pl.concat(parts).group_by(*keys).agg(pl.exclude(*keys).sum())


def weighted_pair_sums(impressions: pl.DataFrame, by_position: np.ndarray | None):
    """:func:`pair_sums` with each impression weighted by its position's propensity,
    ``by_position[k - 1]`` at position k (the last value beyond); None: unweighted."""
    if by_position is None:
        return pair_sums(impressions)
    return pair_sums(impressions, position_weights(impressions, by_position))


def position_weights(impressions: pl.DataFrame, by_position: np.ndarray) -> pl.Series:
    """``by_position[k - 1]`` for each impression at position k (the last value beyond)."""
    index = np.minimum(impressions["position"].to_numpy(), len(by_position)) - 1
    return pl.Series("propensity", by_position[index], dtype=pl.Float64)


def pairs_from_sums(
    sums: pl.DataFrame, keys=PAIR_KEYS, vocabulary: dict | None = None
) -> pl.DataFrame:
    """:func:`pair_counts` from the (added) :func:`pair_sums`."""
    vocabulary = vocabulary or key_vocabulary(sums, keys)
    behaviours = [c for c in BEHAVIOURS if c in sums.columns]
    positions = "_position_sum" in sums.columns
    mean_position = pl.col("_position_sum") / pl.col("impressions")
    counts = sums.select(
        pair_key(keys, vocabulary).alias("_pair"),
        *keys,
        pl.col("impressions").cast(pl.UInt32),
        # Rounded as before the sums were exact, so that the labels stay the same bits.
        (pl.col("_exposure").cast(pl.Float64) / _FIXED_POINT).round(9).alias("exposure"),
        *behaviours,
        *([mean_position.alias("mean_position")] if positions else []),
    )
    stratum = (
        pl.col("mean_position").log(2).floor().cast(pl.Int32) if positions else pl.lit(0, pl.Int32)
    )
    # Sorted by key so that everything downstream (the prior fit's sample) is deterministic.
    return counts.with_columns(prior_stratum=stratum).sort("_pair")


def key_vocabulary(frame: pl.DataFrame, keys=PAIR_KEYS) -> dict[str, dict | None]:
    """Integer codes for the values of each key column; None where the values already are
    small non-negative integers and serve as their own codes."""
    if len(keys) > 2:
        raise ValueError("pair keys combine at most two columns")
    vocabulary: dict[str, dict | None] = {}
    for column in keys:
        series = frame[column]
        if series.dtype.is_integer() and (
            len(series) == 0 or (series.min() >= 0 and series.max() < 1 << 31)
        ):
            vocabulary[column] = None
        else:
            values = series.unique().sort().to_list()
            vocabulary[column] = dict(zip(values, range(len(values)), strict=True))
    return vocabulary


def pair_key(keys, vocabulary: dict[str, dict | None]) -> pl.Expr:
    """One exact Int64 per key combination (null for values outside the vocabulary).

    Grouping 20M rows on it is several times faster than on a string and an id.
    """
    key = None
    for column in keys:
        codes = vocabulary[column]
        code = (
            pl.col(column).cast(pl.Int64)
            if codes is None
            else pl.col(column).replace_strict(codes, default=None, return_dtype=pl.Int64)
        )
        key = code if key is None else key * (1 << 32) + code
    return key


def fit_beta_prior(
    successes: np.ndarray, trials: np.ndarray, max_pairs: int = 20_000, seed: int = 0
) -> BetaPrior:
    """Maximum-likelihood Beta prior of the beta-binomial model over pairs.

    ``trials`` may be fractional (debiased exposure); the likelihood is then the continuous
    extension through the Beta function. Successes above the trials (possible once debiased)
    are capped at the trials for the fit. Beyond ``max_pairs`` pairs a seeded sample is fitted:
    two parameters are pinned down long before that.

    The fit is Newton's method on the log-parameters with the exact Hessian, in elementwise
    special functions and NumPy sums only. A library optimizer (SciPy's L-BFGS-B) is not
    used because its inner products run in BLAS, whose kernels, picked by processor (AVX-512,
    AVX2, SSE), round differently: its optimum moved in the last bits between processors,
    and through the graded labels so did the dataset fingerprint.
    """
    trials = np.asarray(trials, dtype=np.float64)
    successes = np.minimum(np.asarray(successes, dtype=np.float64), trials)
    keep = trials > 0
    successes, trials = successes[keep], trials[keep]
    if len(trials) > max_pairs:
        sample = np.random.default_rng(seed).choice(len(trials), max_pairs, replace=False)
        successes, trials = successes[sample], trials[sample]
    if len(trials) == 0 or successes.sum() == 0:
        return BetaPrior(alpha=1e-3, beta=1.0)
    mean = float(successes.sum() / trials.sum())
    start = (math.log(mean * 2.0), math.log((1 - mean) * 2.0))
    alpha, beta = _newton_beta_binomial(successes, trials - successes, start)
    return BetaPrior(alpha, beta)


_LOG_BOUNDS = (-10.0, 15.0)  # on log alpha and log beta: priors worth 4.5e-5 to 3.3e6 trials


def _negative_log_likelihood(successes, failures, log_params) -> float:
    a, b = math.exp(log_params[0]), math.exp(log_params[1])
    value = float(np.sum(betaln(successes + a, failures + b)))
    return -(value - len(successes) * float(betaln(a, b)))


def _gradient_and_hessian(successes, failures, log_params):
    """Of the negative log-likelihood, in the log-parameters."""
    a, b = math.exp(log_params[0]), math.exp(log_params[1])
    n, trials = len(successes), successes + failures
    shared = float(np.sum(digamma(trials + a + b))) - n * float(digamma(a + b))
    g_a = float(np.sum(digamma(successes + a))) - n * float(digamma(a)) - shared
    g_b = float(np.sum(digamma(failures + b))) - n * float(digamma(b)) - shared
    shared2 = float(np.sum(polygamma(1, trials + a + b))) - n * float(polygamma(1, a + b))
    h_aa = float(np.sum(polygamma(1, successes + a))) - n * float(polygamma(1, a)) - shared2
    h_bb = float(np.sum(polygamma(1, failures + b))) - n * float(polygamma(1, b)) - shared2
    # Chain rule through alpha = exp(u): d/du = a d/da, d2/du2 = a^2 d2/da2 + a d/da.
    gradient = (-g_a * a, -g_b * b)
    hessian = (-(a * a * h_aa + a * g_a), a * b * shared2, -(b * b * h_bb + b * g_b))
    return gradient, hessian


def _newton_beta_binomial(successes, failures, start, max_steps: int = 100):
    """Projected Newton with backtracking on the two log-parameters, in plain floats (same
    operations in the same order on every processor); a coordinate at its bound with the
    gradient pushing outward is held, and a Hessian that is not positive definite falls
    back to the gradient direction."""
    low, high = _LOG_BOUNDS
    x = tuple(min(max(v, low), high) for v in start)
    value = _negative_log_likelihood(successes, failures, x)
    for _ in range(max_steps):
        gradient, (h00, h01, h11) = _gradient_and_hessian(successes, failures, x)
        free = [
            not ((x[i] <= low and gradient[i] > 0) or (x[i] >= high and gradient[i] < 0))
            for i in range(2)
        ]
        determinant = h00 * h11 - h01 * h01
        if all(free) and h00 > 0 and determinant > 0:
            step = (
                -(h11 * gradient[0] - h01 * gradient[1]) / determinant,
                -(h00 * gradient[1] - h01 * gradient[0]) / determinant,
            )
        else:
            step = tuple(
                (-gradient[i] / curvature if curvature > 0 else -gradient[i]) if free[i] else 0.0
                for i, curvature in enumerate((h00, h11))
            )
        scale, previous = 1.0, x
        for _ in range(60):  # backtracking (Armijo) on the projected point
            trial = tuple(min(max(x[i] + scale * step[i], low), high) for i in range(2))
            decrease = sum(gradient[i] * (trial[i] - x[i]) for i in range(2))
            trial_value = _negative_log_likelihood(successes, failures, trial)
            if trial_value <= value + 1e-4 * decrease:
                x, value = trial, trial_value
                break
            scale *= 0.5
        if max(abs(x[0] - previous[0]), abs(x[1] - previous[1])) < 1e-10:
            break  # converged, or no step decreases the objective any more
    return math.exp(x[0]), math.exp(x[1])


def smoothed_rates(
    counts: pl.DataFrame, smoothing: bool = True
) -> tuple[pl.DataFrame, dict[str, dict[int, BetaPrior]]]:
    """Add ``<behaviour>_rate`` per pair; returns the fitted priors too (for the report).

    Priors are per behaviour and per ``prior_stratum``. Without smoothing the rate is
    ``count / exposure`` (0 where nothing was exposed).
    """
    priors: dict[str, dict[int, BetaPrior]] = {}
    columns = []
    exposure = counts["exposure"].to_numpy()
    strata, stratum_of_row = np.unique(counts["prior_stratum"].to_numpy(), return_inverse=True)
    # Rows grouped by stratum once, instead of one boolean mask per stratum and behaviour.
    rows_by_stratum = np.split(
        np.argsort(stratum_of_row, kind="stable"), np.cumsum(np.bincount(stratum_of_row))[:-1]
    )
    for behaviour in ("click", "add_to_cart", "purchase"):
        if behaviour not in counts.columns:
            continue
        successes = counts[behaviour].to_numpy()
        if smoothing:
            fitted = [fit_beta_prior(successes[rows], exposure[rows]) for rows in rows_by_stratum]
            priors[behaviour] = dict(zip(strata.tolist(), fitted, strict=True))
            alpha = np.array([p.alpha for p in fitted])[stratum_of_row]
            strength = np.array([p.strength for p in fitted])[stratum_of_row]
            rate = (successes + alpha) / (exposure + strength)
        else:
            rate = np.divide(successes, exposure, out=np.zeros_like(exposure), where=exposure > 0)
        columns.append(pl.Series(f"{behaviour}_rate", np.clip(rate, 0.0, 1.0)))
    return counts.with_columns(columns), priors
