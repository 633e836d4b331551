import numpy as np
import polars as pl
import pytest

from labeling.click_rates import fit_beta_prior, pair_counts, smoothed_rates


def test_beta_prior_is_recovered_from_beta_binomial_data():
    rng = np.random.default_rng(0)
    rates = rng.beta(2.0, 20.0, 40_000)
    trials = rng.integers(1, 40, 40_000)
    prior = fit_beta_prior(rng.binomial(trials, rates), trials)
    assert prior.alpha == pytest.approx(2.0, rel=0.15)
    assert prior.beta == pytest.approx(20.0, rel=0.15)


def test_fractional_trials_are_accepted():
    rng = np.random.default_rng(1)
    trials = rng.integers(1, 30, 20_000)
    clicks = rng.binomial(trials, rng.beta(1.0, 9.0, 20_000))
    prior = fit_beta_prior(clicks, trials * 0.5)  # exposure half the impressions
    assert 0.1 < prior.mean < 0.35  # clicks / exposure is about twice the raw rate (0.1)


def test_counts_weigh_impressions_by_propensity():
    impressions = pl.DataFrame(
        {
            "query": ["q", "q", "q", "r"],
            "product_id": [1, 1, 2, 1],
            "click": [1, 0, 1, 0],
        }
    )
    counts = pair_counts(impressions, pl.Series([1.0, 0.5, 0.25, 1.0])).sort("query", "product_id")
    assert counts.select("query", "product_id", "impressions", "exposure", "click").rows() == [
        ("q", 1, 2, 1.5, 1.0),
        ("q", 2, 1, 0.25, 1.0),
        ("r", 1, 1, 1.0, 0.0),
    ]


def test_smoothing_pulls_sparse_pairs_towards_the_prior_mean():
    rng = np.random.default_rng(2)
    n = 5_000
    impressions = pl.DataFrame(
        {
            "query": rng.integers(0, 50, n).astype(str),
            "product_id": rng.integers(0, 40, n),
            "click": (rng.random(n) < 0.1).astype(np.int8),
        }
    )
    counts = pair_counts(impressions)
    smoothed, priors = smoothed_rates(counts)
    raw, _ = smoothed_rates(counts, smoothing=False)
    once = counts["impressions"].to_numpy() == 1
    assert set(np.unique(raw["click_rate"].to_numpy()[once])) <= {0.0, 1.0}
    # No positions in this log: one stratum, one prior.
    assert list(priors["click"]) == [0]
    mean = priors["click"][0].mean
    assert np.all(np.abs(smoothed["click_rate"].to_numpy()[once] - mean) < 0.1)


def test_one_prior_per_stratum_of_mean_position():
    impressions = pl.DataFrame(
        {
            "query": ["q"] * 6,
            "product_id": [1, 1, 2, 3, 4, 5],
            "position": [1, 1, 2, 3, 5, 9],
            "click": [1, 0, 1, 0, 0, 0],
        }
    )
    counts = pair_counts(impressions).sort("product_id")
    assert counts["prior_stratum"].to_list() == [0, 1, 1, 2, 3]
