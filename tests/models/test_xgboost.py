"""The XGBoost ranker through the model contract, on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics import ndcg
from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource
from models import create_ranker


@pytest.fixture(scope="module")
def datamodule() -> SearchLogDataModule:
    datamodule = SearchLogDataModule(SimulatorSource("tiny"))
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def fitted(datamodule):
    ranker = create_ranker("xgboost", {"n_estimators": 60}, seed=0)
    ranker.fit(datamodule)
    return ranker


def test_predict_gives_one_finite_score_per_row(datamodule, fitted):
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert np.isfinite(scores).all()
    assert set(fitted.predict_tasks(datamodule, "test")) == {"relevance"}
    assert fitted.training_summary["best_iteration"] >= 0


def test_same_seed_same_scores(datamodule, fitted):
    again = create_ranker("xgboost", {"n_estimators": 60}, seed=0)
    again.fit(datamodule)
    np.testing.assert_array_equal(
        again.predict(datamodule, "test"), fitted.predict(datamodule, "test")
    )


def test_better_than_random_on_true_relevance(datamodule, fitted):
    test = datamodule.arrays("test")
    truth = test.labels["true_relevance"]
    model = ndcg(truth, fitted.predict(datamodule, "test"), test.group, k=10).mean
    random = ndcg(truth, np.zeros(test.n_rows), test.group, k=10).mean
    assert model > random + 0.02
