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

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import betaln, digamma

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
    mean = successes.sum() / trials.sum()
    failures = trials - successes

    def negative_log_likelihood(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        alpha, beta = np.exp(log_params)
        value = np.sum(betaln(successes + alpha, failures + beta) - betaln(alpha, beta))
        shared = digamma(trials + alpha + beta) - digamma(alpha + beta)
        d_alpha = np.sum(digamma(successes + alpha) - digamma(alpha) - shared)
        d_beta = np.sum(digamma(failures + beta) - digamma(beta) - shared)
        # Gradient in log-parameters: chain rule through exp.
        return -value, -np.array([d_alpha * alpha, d_beta * beta])

    start = np.log([mean * 2.0, (1 - mean) * 2.0])
    result = minimize(
        negative_log_likelihood,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-10.0, 15.0), (-10.0, 15.0)],
    )
    alpha, beta = np.exp(result.x)
    return BetaPrior(float(alpha), float(beta))


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
