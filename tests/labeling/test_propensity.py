"""Position-bias estimation: hand-computable logs, synthetic and simulated logs, the API."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from datamodules.simulator import preset, simulate
from labeling.propensity import (
    PropensityEstimate,
    estimate_propensities,
    impression_propensity,
)


def hand_log(cells: dict[tuple, tuple[int, int]], columns: tuple[str, ...]) -> pl.DataFrame:
    """One row per impression from {key: (impressions, clicks)}; the first `clicks` clicked."""
    rows = {name: [] for name in (*columns, "click")}
    for key, (n, c) in cells.items():
        for i in range(n):
            for name, value in zip(columns, key, strict=True):
                rows[name].append(value)
            rows["click"].append(int(i < c))
    return pl.DataFrame(rows).with_columns(
        pl.col("position").cast(pl.Int32), pl.col("click").cast(pl.Int8)
    )


def pbm_log(theta: np.ndarray, n_pairs: int, shows: int, seed: int) -> pl.DataFrame:
    """A position-based-model log whose positions are random (no ranker confounding)."""
    rng = np.random.default_rng(seed)
    gamma = rng.beta(1.5, 3.0, n_pairs)
    pair = np.repeat(np.arange(n_pairs), shows)
    position = rng.integers(1, len(theta) + 1, len(pair))
    click = rng.random(len(pair)) < theta[position - 1] * gamma[pair]
    return pl.DataFrame(
        {
            "query": pl.Series([f"q{p % 97}" for p in pair]),
            "product_id": pair.astype(np.int64),
            "position": position.astype(np.int32),
            "click": click.astype(np.int8),
            "hint": gamma[pair] + rng.normal(0, 0.05, len(pair)),
        }
    )


def relative_error(estimate: PropensityEstimate, truth: np.ndarray) -> np.ndarray:
    p = estimate.curve["propensity"].to_numpy()
    return np.abs(p / truth[: len(p)] - 1)


@pytest.fixture(scope="module")
def swap_log():
    """ci-sized catalog, 20k requests, half of them randomized by rand_pair."""
    return simulate(preset("ci", n_requests=20_000, intervention_rate=0.5, seed=3))


# --------------------------------------------------------------------------- by hand


def test_intervention_estimate_on_a_hand_made_swap_log():
    # r_1 = 0.5, r_2 = 0.4 (mean attraction by ranker position); theta = (1, 0.5).
    cells = {
        # (randomized, ranker_position, position): (impressions, clicks)
        (0, 1, 1): (100, 50),
        (0, 2, 2): (100, 20),
        (1, 1, 2): (100, 25),  # the ranker's top item swapped down to 2
        (1, 2, 1): (100, 40),  # and the item it displaced, shown at 1
    }
    log = hand_log(cells, ("randomized", "ranker_position", "position"))
    estimate = estimate_propensities(log, method="intervention")
    assert estimate.method == "intervention"
    assert estimate.curve.schema == pl.Schema(
        {"position": pl.Int32, "propensity": pl.Float64, "evidence": pl.Int64, "source": pl.String}
    )
    assert estimate.curve["source"].to_list() == ["intervention", "intervention"]
    np.testing.assert_allclose(estimate.curve["propensity"].to_numpy(), [1.0, 0.5], rtol=1e-4)
    assert estimate.curve["evidence"].to_list() == [200, 200]
    assert "moved impressions" in estimate.notes[0]


def test_regression_em_on_a_hand_made_log_that_fits_the_model_exactly():
    theta, gamma = [1.0, 0.6, 0.3], {"a": 0.8, "b": 0.5, "c": 0.2}
    cells = {
        (query, 7, k): (1000, round(1000 * theta[k - 1] * g))
        for query, g in gamma.items()
        for k in (1, 2, 3)
    }
    log = hand_log(cells, ("query", "product_id", "position"))
    estimate = estimate_propensities(log, method="regression_em", tol=1e-9, max_iter=5000)
    assert estimate.method == "regression_em"
    np.testing.assert_allclose(estimate.curve["propensity"].to_numpy(), theta, rtol=0.01)
    assert estimate.curve["evidence"].to_list() == [3000, 3000, 3000]


# --------------------------------------------------------------------------- recovery


def test_regression_em_recovers_a_random_position_log():
    theta = 1.0 / np.arange(1, 7)
    estimate = estimate_propensities(pbm_log(theta, 5_000, 8, seed=0), method="regression_em")
    assert relative_error(estimate, theta).max() < 0.15


def test_regression_em_with_a_feature_regression():
    theta = 1.0 / np.arange(1, 7) ** 1.5
    log = pbm_log(theta, 4_000, 8, seed=1)
    estimate = estimate_propensities(
        log, method="regression_em", feature_columns=["hint"], regression_rounds=2
    )
    assert relative_error(estimate, theta).max() < 0.2
    assert "regressed on hint" in estimate.notes[-1]
    pure = estimate_propensities(
        log, method="regression_em", feature_columns=["hint"], prior_strength=float("inf")
    )
    assert relative_error(pure, theta).max() < 0.25


def test_interventions_recover_the_simulated_curve(swap_log):
    truth = swap_log.truth.examination["examination"].to_numpy()
    estimate = estimate_propensities(swap_log.impressions, method="intervention")
    assert relative_error(estimate, truth).max() < 0.25
    assert estimate.curve["evidence"].min() > 500


@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_interventions_follow_the_bias_strength_with_a_shuffled_top(eta):
    config = preset(
        "ci",
        n_requests=20_000,
        intervention="rand_top",
        intervention_rate=0.5,
        position_bias=eta,
        seed=4,
    )
    log = simulate(config)
    truth = log.truth.examination["examination"].to_numpy()
    estimate = estimate_propensities(log.impressions, method="intervention", max_position=6)
    assert relative_error(estimate, truth).max() < 0.25


def test_regression_em_on_a_simulated_log_without_interventions():
    # Personalization confounds (query, product) pairs with position (the same pair is more
    # relevant to the users who saw it higher), which makes the estimate too steep: the
    # tolerance is loose, 25% at positions 1-5 and 50% beyond.
    log = simulate(preset("ci", n_requests=20_000, intervention_rate=0.0, seed=2))
    truth = log.truth.examination["examination"].to_numpy()
    estimate = estimate_propensities(log.impressions)
    assert estimate.method == "regression_em"
    propensity = estimate.curve["propensity"].to_numpy()
    assert propensity[0] == 1.0
    assert propensity[0] > propensity[2] > propensity[5] > propensity[9]
    error = relative_error(estimate, truth)
    assert error[:5].max() < 0.25
    assert error.max() < 0.5


# --------------------------------------------------------------------------- choosing


def test_auto_uses_interventions_only_when_there_is_enough_evidence(swap_log):
    assert estimate_propensities(swap_log.impressions).method == "intervention"
    few = estimate_propensities(swap_log.impressions, min_evidence=10**6)
    assert few.method == "regression_em"
    assert "min_evidence" in few.notes[0]

    plain = simulate(preset("ci", intervention_rate=0.0))
    chosen = estimate_propensities(plain.impressions)
    assert chosen.method == "regression_em"
    assert "no randomized requests" in chosen.notes[0]
    bare = estimate_propensities(plain.impressions.drop("randomized", "ranker_position"))
    assert bare.method == "regression_em"
    assert "no 'randomized'" in bare.notes[0]
    with pytest.raises(ValueError, match="no randomized requests"):
        estimate_propensities(plain.impressions, method="intervention")


def test_a_log_without_positions_cannot_be_debiased():
    impressions = simulate(preset("tiny")).impressions
    estimate = estimate_propensities(impressions)
    log = impressions.drop("position")
    for call in (
        lambda: estimate_propensities(log),
        lambda: impression_propensity(log, estimate),
    ):
        with pytest.raises(ValueError, match="no 'position' column") as error:
            call()
        assert "\n" not in str(error.value)


def test_bad_settings_are_rejected():
    log = simulate(preset("tiny")).impressions
    with pytest.raises(ValueError, match="unknown propensity method"):
        estimate_propensities(log, method="magic")
    with pytest.raises(ValueError, match="lack column"):
        estimate_propensities(log, method="regression_em", pair_columns=("query", "nope"))


def test_positions_without_evidence_are_null_with_a_note():
    cells = {
        (0, 1, 1): (100, 50),
        (0, 2, 2): (100, 20),
        (0, 3, 3): (100, 10),
        (1, 1, 2): (100, 25),
        (1, 2, 1): (100, 40),
    }
    log = hand_log(cells, ("randomized", "ranker_position", "position"))
    estimate = estimate_propensities(log, method="intervention")
    assert estimate.curve["propensity"].null_count() == 1
    assert estimate.curve["propensity"][2] is None
    assert estimate.curve["evidence"].to_list() == [200, 200, 0]
    assert any("position(s) 3" in note for note in estimate.notes)
    assert estimate.curve["source"].to_list() == ["intervention", "intervention", "filled"]
    assert "3 not estimated" in estimate.notes[-1]
    # auto keeps the interventions it has; regression-EM cannot reach position 3 either (its
    # only pair there is shown nowhere else), so position 3 stays filled.
    log = log.with_columns(query=pl.lit("sofa"), product_id=pl.col("ranker_position"))
    auto = estimate_propensities(log, min_evidence=1)
    assert auto.method == "anchored"
    assert auto.curve["propensity"].to_list()[:2] == estimate.curve["propensity"].to_list()[:2]
    assert auto.curve["source"].to_list() == ["intervention", "intervention", "filled"]


def test_positions_without_clicks_are_null_never_zero():
    log = simulate(preset("tiny")).impressions
    log = log.with_columns(click=pl.when(pl.col("position") == 8).then(0).otherwise("click"))
    estimate = estimate_propensities(log)
    assert estimate.curve["propensity"][7] is None
    assert estimate.curve["propensity"].drop_nulls().min() > 0
    assert any("no clicks at position(s) 8" in note for note in estimate.notes)

    silent = log.with_columns(click=pl.lit(0, dtype=pl.Int8))
    nothing = estimate_propensities(silent)
    assert nothing.curve["propensity"].null_count() == nothing.curve.height
    assert impression_propensity(silent, nothing).unique().to_list() == [1.0]


def test_max_position_limits_the_curve(swap_log):
    estimate = estimate_propensities(swap_log.impressions, max_position=4)
    assert estimate.curve["position"].to_list() == [1, 2, 3, 4]
    assert estimate.max_position == 4
    longer = estimate_propensities(swap_log.impressions, method="regression_em", max_position=12)
    assert longer.curve["propensity"].is_null().to_list() == [False] * 10 + [True] * 2
    assert any("position(s) 11-12" in note for note in longer.notes)


# --------------------------------------------------------------------------- per impression


def test_impression_propensity_follows_the_rows_and_extends_the_last_value():
    curve = pl.DataFrame(
        {
            "position": pl.Series([1, 2, 3, 4], dtype=pl.Int32),
            "propensity": pl.Series([1.0, 0.5, None, 0.25], dtype=pl.Float64),
            "evidence": pl.Series([10, 10, 0, 10], dtype=pl.Int64),
        }
    )
    estimate = PropensityEstimate(curve, "intervention", [])
    rows = pl.DataFrame({"position": pl.Series([4, 1, 7, 3, 2, 1], dtype=pl.Int32)})
    series = impression_propensity(rows, estimate)
    assert series.name == "propensity"
    assert series.dtype == pl.Float64
    assert series.to_list() == [0.25, 1.0, 0.25, 0.5, 0.5, 1.0]


def test_impression_propensity_is_aligned_with_a_shuffled_log(swap_log):
    estimate = estimate_propensities(swap_log.impressions)
    shuffled = swap_log.impressions.sample(fraction=1.0, shuffle=True, seed=0)
    series = impression_propensity(shuffled, estimate)
    lookup = dict(estimate.curve.select("position", "propensity").iter_rows())
    assert series.to_list() == [lookup[p] for p in shuffled["position"]]


def test_estimates_are_deterministic_and_do_not_depend_on_row_order(swap_log):
    first = estimate_propensities(swap_log.impressions, method="regression_em")
    again = estimate_propensities(swap_log.impressions, method="regression_em")
    assert first.curve.equals(again.curve)
    shuffled = swap_log.impressions.sample(fraction=1.0, shuffle=True, seed=1)
    other = estimate_propensities(shuffled, method="regression_em")
    np.testing.assert_allclose(
        other.curve["propensity"].to_numpy(), first.curve["propensity"].to_numpy(), rtol=1e-9
    )
