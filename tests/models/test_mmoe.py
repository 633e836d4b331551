"""MMoE: gates, task heads, the ranking score, and the ranker through the contract on tiny data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models import create_ranker
from models.mmoe import MMoENet, MMoERanker
from tests.models.conftest import QUALITY_BARS, margin_over_random

CONFIG = {"max_epochs": 4}
DEFAULTS = MMoERanker.default_settings()


@pytest.fixture(scope="module")
def batch(datamodule):
    return next(iter(datamodule.loader("val")))


def fit(datamodule, config=CONFIG, seed=0):
    ranker = create_ranker("mmoe", config, seed=seed)
    ranker.progress = False
    ranker.fit(datamodule)
    return ranker


@pytest.fixture(scope="module")
def fitted(datamodule):
    return fit(datamodule)


def test_registered():
    assert isinstance(create_ranker("mmoe"), MMoERanker)


def test_one_head_and_gate_per_task(datamodule, batch):
    torch.manual_seed(0)
    net = MMoENet(datamodule.spec, DEFAULTS)
    outputs = net(batch)
    assert set(outputs) == set(datamodule.spec.tasks)
    for logits in outputs.values():
        assert logits.shape == batch.mask.shape
    assert len(net.heads.experts) == DEFAULTS["n_experts"]
    assert net.task_weights == DEFAULTS["task_weights"]  # all four tasks are on the simulator


def test_gates_sum_to_one_per_item(datamodule, batch):
    torch.manual_seed(0)
    net = MMoENet(datamodule.spec, DEFAULTS)
    gates = net.gate_weights(batch)
    assert set(gates) == set(datamodule.spec.tasks)
    for weights in gates.values():
        assert weights.shape == (*batch.mask.shape, DEFAULTS["n_experts"])
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(batch.mask.shape))


def test_score_mix_changes_the_ranking_score(datamodule, batch):
    torch.manual_seed(0)
    net = MMoENet(datamodule.spec, DEFAULTS)
    mixed = MMoENet(datamodule.spec, {**DEFAULTS, "score_mix": {"relevance": 1.0, "click": 2.0}})
    mixed.load_state_dict(net.state_dict())
    outputs = net(batch)
    torch.testing.assert_close(net.ranking_score(outputs), outputs["relevance"])
    torch.testing.assert_close(
        mixed.ranking_score(outputs), outputs["relevance"] + 2.0 * outputs["click"]
    )
    assert not torch.allclose(mixed.ranking_score(outputs), net.ranking_score(outputs))


def test_click_only_spec_works(datamodule, batch):
    spec = dataclasses.replace(datamodule.spec, tasks=("relevance", "click"))
    net = MMoENet(spec, {**DEFAULTS, "score_mix": {"click": 1.0, "purchase": 1.0}})
    assert net.task_weights == {"relevance": 1.0, "click": 0.5}
    outputs = net(batch)
    assert set(outputs) == {"relevance", "click"}
    net.training_step(batch, 0).backward()
    torch.testing.assert_close(net.ranking_score(outputs), outputs["click"])


def test_bad_task_names_are_refused(datamodule):
    with pytest.raises(ValueError, match="clik"):
        MMoENet(datamodule.spec, {**DEFAULTS, "task_weights": {"clik": 1.0}})
    click_only = dataclasses.replace(datamodule.spec, tasks=("relevance", "click"))
    with pytest.raises(ValueError, match="score_mix"):
        MMoENet(click_only, {**DEFAULTS, "score_mix": {"purchase": 1.0}})
    with pytest.raises(ValueError, match="lacks: cart"):
        MMoENet(datamodule.spec, {**DEFAULTS, "score_mix": {"cart": 1.0}})


def test_predict_gives_one_finite_score_per_row(datamodule, fitted):
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert np.isfinite(scores).all()
    summary = fitted.training_summary
    assert 1 <= summary["epochs"] <= CONFIG["max_epochs"]
    assert 0.0 <= summary["best_val_ndcg@10"] <= 1.0


def test_predict_tasks_gives_one_array_per_task(datamodule, fitted):
    n_rows = datamodule.arrays("test").n_rows
    tasks = fitted.predict_tasks(datamodule, "test")
    assert set(tasks) == set(datamodule.spec.tasks)
    for scores in tasks.values():
        assert scores.shape == (n_rows,)
        assert np.isfinite(scores).all()
    np.testing.assert_array_equal(fitted.predict(datamodule, "test"), tasks["relevance"])


def test_same_seed_same_scores(datamodule, fitted):
    again = fit(datamodule)
    np.testing.assert_array_equal(
        again.predict(datamodule, "test"), fitted.predict(datamodule, "test")
    )


def test_better_than_random_on_true_relevance(datamodule, fitted):
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS["mmoe"]


def test_fitted_score_mix_predicts_the_mix(datamodule):
    mix = {"relevance": 1.0, "purchase": 0.5}
    ranker = fit(datamodule, {**CONFIG, "max_epochs": 1, "score_mix": mix})
    tasks = ranker.predict_tasks(datamodule, "test")
    np.testing.assert_allclose(
        ranker.predict(datamodule, "test"), tasks["relevance"] + 0.5 * tasks["purchase"], rtol=1e-5
    )
