"""The TabNet ranker through the model contract, on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from models import create_ranker
from models.validation_ndcg import grouped_ndcg
from tests.models.conftest import QUALITY_BARS, margin_over_random

# Small batches so that a few epochs on the tiny preset make a few dozen steps.
CONFIG = {"max_epochs": 10, "batch_size": 256, "virtual_batch_size": 64}


@pytest.fixture(scope="module")
def fitted(datamodule):
    ranker = create_ranker("tabnet", CONFIG, seed=0)
    ranker.fit(datamodule)
    return ranker


def test_predict_gives_one_finite_score_per_row(datamodule, fitted):
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert scores.dtype == np.float64
        assert np.isfinite(scores).all()
    assert set(fitted.predict_tasks(datamodule, "test")) == {"relevance"}
    summary = fitted.training_summary
    assert 0 <= summary["best_epoch"] < summary["epochs_run"] <= CONFIG["max_epochs"]
    assert 0.0 <= summary["best_val_ndcg@10"] <= 1.0


def test_best_weights_are_kept(datamodule, fitted):
    # The reported best validation NDCG@10 is the one the returned model scores, by the
    # early-stopping metric's own convention (ties in row order: TabNet's scores do tie).
    val = datamodule.arrays("val")
    scores = fitted.predict(datamodule, "val")
    again = grouped_ndcg(val.labels["relevance"], scores, val.group, k=10)
    assert again == pytest.approx(fitted.training_summary["best_val_ndcg@10"], abs=1e-9)


def test_same_seed_same_scores(datamodule, fitted):
    again = create_ranker("tabnet", CONFIG, seed=0)
    again.fit(datamodule)
    np.testing.assert_array_equal(
        again.predict(datamodule, "test"), fitted.predict(datamodule, "test")
    )
    assert again.training_summary == fitted.training_summary


def test_better_than_random_on_true_relevance(datamodule, fitted):
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS["tabnet"]


def test_other_target_trains(datamodule):
    ranker = create_ranker("tabnet", {**CONFIG, "target": "click", "max_epochs": 2}, seed=0)
    ranker.fit(datamodule)
    assert np.isfinite(ranker.predict(datamodule, "test")).all()


def test_unknown_target_is_refused(datamodule):
    ranker = create_ranker("tabnet", {"target": "true_relevance"}, seed=0)
    with pytest.raises(ValueError, match="target 'true_relevance' is not a training task"):
        ranker.fit(datamodule)


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown setting"):
        create_ranker("tabnet", {"learning_rat": 0.1})
