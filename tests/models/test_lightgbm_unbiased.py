"""LightGBM's position-debiased LambdaMART on raw clicks: what reaches LightGBM, and what it
refuses (the model contract: ``test_lightgbm.py``)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from datamodules import SearchLogDataModule
from datamodules.sources import LetorSource
from models import create_ranker
from tests.datamodules.test_letor import write_letor


@pytest.fixture
def received(monkeypatch):
    """What ``lgb.Dataset`` and ``lgb.train`` are handed, call by call."""
    seen = {"datasets": [], "params": []}
    original_train = lgb.train

    class Recording(lgb.Dataset):
        def __init__(self, data, label=None, **kwargs):
            seen["datasets"].append({"data": data, "label": label, **kwargs})
            super().__init__(data, label, **kwargs)

    def recording_train(params, *args, **kwargs):
        seen["params"].append(dict(params))
        return original_train(params, *args, **kwargs)

    monkeypatch.setattr(lgb, "Dataset", Recording)
    monkeypatch.setattr(lgb, "train", recording_train)
    return seen


def test_the_logged_positions_reach_lightgbm_beside_their_rows(datamodule, received):
    ranker = create_ranker("lightgbm_unbiased", {"n_estimators": 5})
    assert ranker.settings.target == "click"
    ranker.fit(datamodule)
    train = datamodule.arrays("train")
    fields = received["datasets"][0]  # the training split's
    np.testing.assert_array_equal(fields["data"], train.tabular())
    np.testing.assert_array_equal(fields["label"], train.labels["click"])
    np.testing.assert_array_equal(fields["group"], train.group_sizes)
    np.testing.assert_array_equal(fields["position"], train.position)
    assert received["params"][0]["lambdarank_position_bias_regularization"] == 0.0
    # The plain ranker gives none.
    create_ranker("lightgbm", {"n_estimators": 5, "target": "click"}).fit(datamodule)
    assert "position" not in received["datasets"][2]


def test_the_positions_change_the_model(datamodule):
    scores = {}
    for name in ("lightgbm_unbiased", "lightgbm"):
        ranker = create_ranker(name, {"n_estimators": 20, "target": "click"}, seed=0)
        ranker.fit(datamodule)
        scores[name] = ranker.predict(datamodule, "test")
    assert not np.allclose(scores["lightgbm_unbiased"], scores["lightgbm"])


def test_a_judged_dataset_without_clicks_is_refused(tmp_path):
    judged = SearchLogDataModule(LetorSource(str(write_letor(tmp_path / "letor"))))
    judged.setup()
    with pytest.raises(ValueError) as error:
        create_ranker("lightgbm_unbiased").fit(judged)
    assert str(error.value) == (
        "lightgbm_unbiased: target 'click' is not a training task; tasks: relevance"
    )
