"""Derived labels: each step does what the docs say, and the labels track the simulator's truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from benchmarks.label_quality import agreement
from datamodules.simulator import preset, simulate
from labeling.relevance import LabelingConfig, derive_labels


@pytest.fixture(scope="module")
def log():
    return simulate(preset("ci", position_bias=1.5))


@pytest.fixture(scope="module")
def similarity(log):
    """A stand-in for the text encoder: true relevance of the pair, averaged over users, plus
    noise. Labeling receives similarity as a column; where it comes from is not its business."""
    rng = np.random.default_rng(0)
    pairs = (
        log.impressions.join(log.truth.relevance, on=["request_id", "product_id"])
        .group_by("query", "product_id")
        .agg(pl.col("true_relevance").mean().alias("similarity"))
    )
    return pairs.with_columns(pl.col("similarity") + rng.normal(0, 1.0, pairs.height))


def _truth(log) -> np.ndarray:
    return log.impressions.join(
        log.truth.relevance, on=["request_id", "product_id"], how="left", maintain_order="left"
    )["true_relevance"].to_numpy()


def _agreement(log, labels: dict) -> dict:
    table = agreement(_truth(log), labels, log.impressions["request_id"].to_numpy())
    return {row["label"]: row for row in table.iter_rows(named=True)}


def test_one_graded_row_per_pair(log, similarity):
    derived = derive_labels(log.impressions, similarity)
    pairs = derived.pairs
    assert pairs.height == log.impressions.select("query", "product_id").n_unique()
    assert set(pairs["grade"].unique()) <= {0, 1, 2, 3, 4}
    assert pairs["grade"].n_unique() == 5
    grades = derived.for_impressions(log.impressions)
    assert len(grades) == log.impressions.height and grades.dtype == pl.Int8
    assert derived.propensity is not None


def test_derived_labels_beat_raw_click_rate_and_similarity_alone(log, similarity):
    derived = derive_labels(log.impressions, similarity)
    pairs = log.impressions.select("query", "product_id").join(
        derived.pairs, on=["query", "product_id"], how="left", maintain_order="left"
    )
    scores = _agreement(
        log,
        {
            "grade": derived.for_impressions(log.impressions).to_numpy(),
            "score": pairs["score"].to_numpy(),
            "raw click rate": (pairs["click"] / pairs["impressions"]).to_numpy(),
            "similarity": pairs["similarity"].to_numpy(),
        },
    )
    assert scores["grade"]["kendall_tau"] > scores["raw click rate"]["kendall_tau"]
    assert scores["grade"]["kendall_tau"] > scores["similarity"]["kendall_tau"]
    assert scores["score"]["ndcg@10"] > scores["raw click rate"]["ndcg@10"]


def test_score_follows_the_documented_combination(log, similarity):
    config = LabelingConfig(similarity_weight=0.25, confidence_exposure=2.0)
    pairs = derive_labels(log.impressions, similarity, config).pairs
    confidence = pairs["exposure"] / (pairs["exposure"] + 2.0)
    behaviour, similar = pairs["behaviour_score"], pairs["similarity_score"]
    expected = 0.25 * similar + 0.75 * (confidence * behaviour + (1 - confidence) * similar)
    np.testing.assert_allclose(pairs["score"], expected)
    cuts = np.array([0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(
        pairs["grade"], (pairs["score"].to_numpy()[:, None] >= cuts).sum(axis=1)
    )


def test_debiasing_weighs_impressions_by_their_propensity(log, similarity):
    debiased = derive_labels(log.impressions, similarity).pairs
    plain = derive_labels(log.impressions, similarity, LabelingConfig(debias=False)).pairs
    assert (plain["exposure"] == plain["impressions"].cast(pl.Float64)).all()
    assert (debiased["exposure"] < debiased["impressions"]).mean() > 0.5


def test_without_smoothing_rates_are_plain_ratios(log, similarity):
    config = LabelingConfig(smoothing=False, debias=False)
    derived = derive_labels(log.impressions, similarity, config)
    pairs = derived.pairs
    np.testing.assert_allclose(pairs["click_rate"], pairs["click"] / pairs["impressions"])
    assert derived.priors == {}


def test_without_similarity_the_score_is_behaviour(log):
    derived = derive_labels(log.impressions, None, LabelingConfig(use_similarity=False))
    assert derived.pairs["score"].equals(derived.pairs["behaviour_score"], check_names=False)
    assert any("similarity not used" in note for note in derived.notes)


def test_rarely_seen_pairs_lean_on_similarity(log, similarity):
    pairs = derive_labels(log.impressions, similarity).pairs
    rare = pairs.filter(pl.col("exposure") < pl.col("exposure").quantile(0.2))
    frequent = pairs.filter(pl.col("exposure") > pl.col("exposure").quantile(0.98))

    def corr(table, column):
        return np.corrcoef(table["score"], table[column])[0, 1]

    assert corr(rare, "similarity_score") > corr(rare, "behaviour_score")
    assert corr(frequent, "behaviour_score") > corr(rare, "behaviour_score")


def test_a_log_without_positions_cannot_be_debiased(log, similarity):
    no_positions = log.impressions.drop("position")
    with pytest.raises(ValueError, match="no 'position' column.*missing_positions"):
        derive_labels(no_positions, similarity)
    derived = derive_labels(no_positions, similarity, LabelingConfig(missing_positions="no_debias"))
    assert derived.propensity is None
    assert any("NOT debiased" in note for note in derived.notes)


def test_missing_funnel_steps_drop_out_and_are_reported(log, similarity):
    clicks_only = log.impressions.drop("add_to_cart", "purchase")
    derived = derive_labels(clicks_only, similarity)
    assert "add_to_cart_rate" not in derived.pairs.columns
    assert any("no add_to_cart" in note for note in derived.notes)
    assert any("no purchase" in note for note in derived.notes)


def test_missing_similarity_is_an_error(log, similarity):
    with pytest.raises(ValueError, match="similarity is missing for 1 "):
        derive_labels(log.impressions, similarity.slice(1))


@pytest.mark.parametrize(
    "bad",
    [
        {"similarity_weight": 2.0},
        {"grade_cuts": (0.5, 0.2, 0.6, 0.8)},
        {"missing_positions": "ignore"},
    ],
)
def test_bad_settings(bad):
    with pytest.raises(ValueError):
        replace(LabelingConfig(), **bad)


def test_labels_are_deterministic_whatever_the_row_order(log, similarity):
    first = derive_labels(log.impressions, similarity).pairs.sort("query", "product_id")
    shuffled = log.impressions.sample(fraction=1.0, shuffle=True, seed=7)
    again = derive_labels(shuffled, similarity).pairs.sort("query", "product_id")
    assert first["grade"].equals(again["grade"])
    np.testing.assert_allclose(first["score"], again["score"])
