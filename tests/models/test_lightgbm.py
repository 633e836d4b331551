"""The two LightGBM rankers through the model contract, on tiny data (the debiasing itself:
``test_lightgbm_unbiased.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from models import create_ranker
from models.validation_ndcg import grouped_ndcg
from tests.models.conftest import QUALITY_BARS, margin_over_random

# Test NDCG@10 on true relevance over a random order: each bar sits about halfway between
# random and what the model measured on the tiny preset (0.21 and 0.17).
MODELS = ["lightgbm", "lightgbm_unbiased"]


@pytest.fixture(scope="module", params=MODELS)
def fitted(request, datamodule):
    ranker = create_ranker(request.param, {"n_estimators": 60}, seed=0)
    ranker.fit(datamodule)
    return ranker


def test_one_finite_score_per_row_the_same_again_under_the_seed(datamodule, fitted):
    again = create_ranker(fitted.name, fitted.config, seed=0)
    again.fit(datamodule)
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert np.isfinite(scores).all()
        np.testing.assert_array_equal(again.predict(datamodule, split), scores)
    assert set(fitted.predict_tasks(datamodule, "test")) == {"relevance"}
    assert fitted.training_summary["best_iteration"] >= 0


def test_better_than_random_on_true_relevance(datamodule, fitted):
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS[fitted.name]


def test_early_stopping_reads_the_suites_validation_ndcg(datamodule):
    # Click labels leave most validation groups without a positive: LightGBM's own ndcg
    # would count them 1; the suite's leaves them out, and that is what picks the round kept
    # and what is stored.
    ranker = create_ranker("lightgbm", {"n_estimators": 30, "target": "click"}, seed=0)
    ranker.fit(datamodule)
    val = datamodule.arrays("val")
    clicks, group = val.labels["click"], val.group
    assert 0 < len(np.unique(group[clicks > 0])) < val.n_groups
    stored = ranker.training_summary["best_val_ndcg@10"]
    assert stored == grouped_ndcg(clicks, ranker.predict(datamodule, "val"), group, k=10)
    booster = ranker.booster
    curve = [
        grouped_ndcg(clicks, booster.predict(val.tabular(), num_iteration=rounds), group, k=10)
        for rounds in range(1, booster.num_trees() + 1)
    ]
    assert stored == max(curve)
    assert ranker.training_summary["best_iteration"] == int(np.argmax(curve))
