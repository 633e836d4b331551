"""Logs that randomize only their top positions: regression-EM anchored on the interventions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from labeling.propensity import estimate_propensities, impression_propensity
from labeling.propensity_anchored import _anchored_estimate
from labeling.propensity_estimate import PropensityEstimate, _curve

THETA = 1.0 / np.arange(1, 11)  # true examination of positions 1..10
DEPTH = 4  # randomized requests shuffle positions 1..DEPTH only


def top_randomized_log(
    theta: np.ndarray, depth: int, n_requests: int, seed: int, rate: float = 0.5
) -> pl.DataFrame:
    """A position-based-model log whose randomized requests shuffle positions 1..depth.

    100 queries of 30 products each; the logging ranker shows a query's top len(theta) products
    by their attraction plus noise (so a product is shown at several positions over the log),
    and a share ``rate`` of requests shuffles the first ``depth`` of them.
    """
    rng = np.random.default_rng(seed)
    k, n_queries, per_query = len(theta), 100, 30
    gamma = rng.beta(1.5, 3.0, (n_queries, per_query))
    query = rng.integers(0, n_queries, n_requests)
    score = gamma[query] + rng.normal(0.0, 0.3, (n_requests, per_query))
    column = np.argsort(-score, axis=1)[:, :k]  # the product at each ranker position
    randomized = rng.random(n_requests) < rate
    shown = np.tile(np.arange(k), (n_requests, 1))  # 0-based shown position per ranker position
    shuffled = np.argsort(rng.random((n_requests, depth)), axis=1)
    shown[randomized, :depth] = shuffled[randomized]
    attraction = np.take_along_axis(gamma[query], column, axis=1)
    click = rng.random((n_requests, k)) < theta[shown] * attraction
    return pl.DataFrame(
        {
            "request_id": np.repeat(np.arange(n_requests), k),
            "query": pl.Series(np.repeat(query, k).astype(str)),
            "product_id": (query[:, None] * per_query + column).ravel(),
            "position": pl.Series((shown + 1).ravel(), dtype=pl.Int32),
            "click": pl.Series(click.ravel(), dtype=pl.Int8),
            "randomized": pl.Series(np.repeat(randomized, k), dtype=pl.Int8),
            "ranker_position": pl.Series(np.tile(np.arange(1, k + 1), n_requests), dtype=pl.Int32),
        }
    )


def error_by_position(propensity, truth: np.ndarray = THETA) -> np.ndarray:
    return np.abs(np.asarray(propensity, dtype=np.float64) / truth - 1)


@pytest.fixture(scope="module")
def top_log():
    return top_randomized_log(THETA, DEPTH, n_requests=20_000, seed=0)


def test_deeper_positions_are_estimated_not_copied(top_log):
    estimate = estimate_propensities(top_log)
    assert estimate.method == "anchored"
    assert estimate.curve["source"].to_list() == ["intervention"] * DEPTH + [
        "regression_em_anchored"
    ] * (10 - DEPTH)
    strict = estimate_propensities(top_log, method="intervention")
    np.testing.assert_array_equal(
        estimate.curve["propensity"][:DEPTH], strict.curve["propensity"][:DEPTH]
    )
    assert (
        "positions 1-4 from interventions, 5-10 from regression-EM anchored on them (scale"
        in (estimate.notes[-1])
    )

    # What the labels use: each impression's propensity, against the truth of its position.
    positions = pl.DataFrame({"position": pl.Series(np.arange(1, 11), dtype=pl.Int32)})
    anchored = error_by_position(impression_propensity(positions, estimate))
    copied = error_by_position(impression_propensity(positions, strict))
    deep = slice(DEPTH, None)
    assert anchored[:DEPTH].max() < 0.1
    assert anchored[deep].max() < 0.1 and anchored[deep].mean() < 0.05
    # Copying position 4's 0.25 down is 25% off at position 5 and 150% at position 10.
    assert copied[deep].mean() > 0.5
    assert anchored[deep].mean() < copied[deep].mean() / 10


def test_strict_interventions_leave_the_deeper_positions_to_the_fill(top_log):
    strict = estimate_propensities(top_log, method="intervention")
    assert strict.method == "intervention"
    assert strict.curve["propensity"].null_count() == 10 - DEPTH
    assert strict.curve["source"].to_list() == ["intervention"] * DEPTH + ["filled"] * (10 - DEPTH)
    assert strict.notes[-1].startswith("positions 1-4 from interventions, 5-10 not estimated")
    assert "propensity_method auto" in strict.notes[-1]


def test_full_coverage_and_plain_logs_keep_their_estimators():
    shuffled = top_randomized_log(THETA, 10, n_requests=5_000, seed=1)
    auto = estimate_propensities(shuffled)
    assert auto.method == "intervention"
    assert auto.curve.equals(estimate_propensities(shuffled, method="intervention").curve)
    assert auto.curve["source"].unique().to_list() == ["intervention"]
    assert not any("not estimated" in note for note in auto.notes)

    plain = top_randomized_log(THETA, DEPTH, n_requests=5_000, seed=1, rate=0.0)
    auto = estimate_propensities(plain)
    assert auto.method == "regression_em"
    assert auto.curve.equals(estimate_propensities(plain, method="regression_em").curve)
    assert auto.curve["source"].unique().to_list() == ["regression_em"]
    longer = estimate_propensities(plain, max_position=12)
    assert longer.curve["source"].to_list() == ["regression_em"] * 10 + ["filled"] * 2
    assert "11-12 not estimated" in longer.notes[-1]


def test_too_little_randomized_evidence_anywhere_falls_back_to_regression_em(top_log):
    estimate = estimate_propensities(top_log, min_evidence=10**6)
    assert estimate.method == "regression_em"
    assert "min_evidence" in estimate.notes[0]


# --------------------------------------------------------------------------- the anchoring


def estimate_of(propensity, evidence, method: str) -> PropensityEstimate:
    propensity = np.asarray(propensity, dtype=np.float64)
    known = ~np.isnan(propensity)
    return PropensityEstimate(_curve(propensity, known, np.asarray(evidence), method), method)


def test_the_scale_is_fitted_on_log_propensities_weighted_by_evidence():
    # Regression-EM's curve is right up to its level (25% too high beyond position 1), except
    # at position 4, where a thinly evidenced estimate is far off: it must barely count.
    truth = 1.0 / np.arange(1, 9)
    regression = truth * 1.25
    regression[0], regression[3] = 1.0, truth[3] * 2.5
    nothing = [np.nan] * 4
    evidence = [9000] * 3 + [8] + [0] * 4
    intervention = estimate_of(np.r_[truth[:4], nothing], evidence, "intervention")
    trusted = np.r_[[True] * 4, [False] * 4]
    notes: list[str] = []
    regression_em = estimate_of(regression, [9000] * 8, "regression_em")
    anchored = _anchored_estimate(intervention, regression_em, trusted, notes)
    np.testing.assert_allclose(anchored.curve["propensity"][4:], truth[4:], rtol=0.01)
    assert anchored.curve["evidence"].to_list() == [9000] * 3 + [8] + [9000] * 4
    assert "from regression-EM anchored on them (scale 0.800 over positions 2-4" in notes[-1]


def test_without_an_overlap_regression_em_is_used_as_it_is():
    intervention = estimate_of(
        [1.0, 0.5, np.nan, 0.25, np.nan], [500, 500, 0, 20, 0], "intervention"
    )
    regression = estimate_of(
        [1.0, np.nan, 0.3, np.nan, 0.22], [900, 0, 900, 0, 900], "regression_em"
    )
    trusted = np.array([True, True, False, False, False])
    notes: list[str] = []
    combined = _anchored_estimate(intervention, regression, trusted, notes)
    # Position 4: regression-EM has nothing, so the thinly evidenced intervention estimate is
    # used rather than the fill.
    assert combined.curve["source"].to_list() == [
        "intervention",
        "intervention",
        "regression_em",
        "intervention",
        "regression_em",
    ]
    np.testing.assert_allclose(combined.curve["propensity"], [1.0, 0.5, 0.3, 0.25, 0.22])
    assert any("used as it is" in note for note in notes)
