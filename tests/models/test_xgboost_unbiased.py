"""Unbiased LambdaMART on raw clicks, through the model contract."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from models import create_ranker
from tests.models.conftest import QUALITY_BARS, margin_over_random


@pytest.fixture(scope="module")
def fitted(datamodule):
    ranker = create_ranker("xgboost_unbiased", {"n_estimators": 60}, seed=0)
    ranker.fit(datamodule)
    return ranker


def test_it_trains_on_clicks_in_the_shown_order(datamodule, fitted, monkeypatch):
    assert fitted.settings.target == "click"
    train = datamodule.arrays("train")
    order = fitted.training_order(train)
    groups, positions = train.group[order], train.position[order]
    assert np.all(np.diff(groups) >= 0)  # requests stay together
    same = groups[1:] == groups[:-1]
    assert np.all(np.diff(positions)[same] > 0)  # each request by logged position
    seen = {}
    original = xgb.XGBRanker.fit

    def recording(self, X, y, *args, **kwargs):
        seen["params"] = self.get_params()
        return original(self, X, y, *args, **kwargs)

    monkeypatch.setattr(xgb.XGBRanker, "fit", recording)
    create_ranker("xgboost_unbiased", {"n_estimators": 5}).fit(datamodule)
    assert seen["params"]["lambdarank_unbiased"] is True
    assert seen["params"]["lambdarank_bias_norm"] == 2.0


def test_scores_every_row_and_beats_random_on_true_relevance(datamodule, fitted):
    scores = fitted.predict(datamodule, "test")
    assert scores.shape == (datamodule.arrays("test").n_rows,) and np.isfinite(scores).all()
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS["xgboost_unbiased"]


def test_a_log_without_clicks_is_refused(datamodule):
    ranker = create_ranker("xgboost_unbiased", {"target": "purchases"})
    with pytest.raises(ValueError, match="target 'purchases' is not a training task"):
        ranker.fit(datamodule)
