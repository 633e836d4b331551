"""The XGBoost ranker through the model contract, on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from models import create_ranker
from tests.models.conftest import margin_over_random


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
    assert margin_over_random(datamodule, fitted) > 0.02
