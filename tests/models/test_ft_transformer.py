"""The FT-Transformer ranker through the model contract, on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.batches import QueryGroupDataset, collate_groups
from models.base import create_ranker
from models.ft_transformer import FTTransformerNet, FTTransformerRanker
from tests.models.conftest import QUALITY_BARS, margin_over_random

# The default (paper) lr of 1e-4 learns the tiny preset within a few epochs.
CONFIG = {"max_epochs": 4}


def fitted_ranker(datamodule, config, seed=0):
    ranker = create_ranker("ft_transformer", config, seed=seed)
    ranker.progress = False
    ranker.fit(datamodule)
    return ranker


def make_net(datamodule, **settings) -> FTTransformerNet:
    return FTTransformerNet(datamodule.spec, {**FTTransformerRanker.default_settings(), **settings})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The models here are small: on a busy 2-core machine two torch threads mostly spin
    # against each other (measured 4x the CPU time of one thread for the same fit).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fitted(datamodule):
    return fitted_ranker(datamodule, CONFIG)


def test_predict_gives_one_finite_score_per_row(datamodule, fitted):
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert scores.dtype == np.float64
        assert np.isfinite(scores).all()
        assert np.unique(scores).size > 1
    assert set(fitted.predict_tasks(datamodule, "test")) == {"relevance"}
    summary = fitted.training_summary
    assert 1 <= summary["epochs"] <= CONFIG["max_epochs"]
    assert 0.0 <= summary["best_val_ndcg@10"] <= 1.0


def test_same_seed_same_scores(datamodule, fitted):
    again = fitted_ranker(datamodule, CONFIG)
    np.testing.assert_array_equal(
        again.predict(datamodule, "test"), fitted.predict(datamodule, "test")
    )


def test_better_than_random_on_true_relevance(datamodule, fitted):
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS["ft_transformer"]


def test_one_output_per_task(datamodule):
    weights = {"relevance": 1.0, "click": 0.5}
    ranker = fitted_ranker(datamodule, {"max_epochs": 1, "task_weights": weights})
    assert ranker.module.model.backbone.output.linear.out_features == 2
    tasks = ranker.predict_tasks(datamodule, "test")
    assert set(tasks) == set(weights)
    n_rows = datamodule.arrays("test").n_rows
    for scores in tasks.values():
        assert scores.shape == (n_rows,) and np.isfinite(scores).all()
    assert not np.array_equal(tasks["relevance"], tasks["click"])
    np.testing.assert_array_equal(ranker.predict(datamodule, "test"), tasks["relevance"])


def test_items_are_scored_alone(datamodule):
    # Logits are [groups, list], and an item's score depends neither on its group's other
    # items nor on the padding of the batch.
    net = make_net(datamodule).eval()
    batch = next(iter(datamodule.loader("test")))
    with torch.no_grad():
        logits = net(batch)["relevance"]
        assert logits.shape == batch.mask.shape
        group = 0 if not batch.mask.all() else 1
        length = int(batch.mask[group].sum())
        single = collate_groups([QueryGroupDataset(datamodule.arrays("test"))[group]])
        alone = net(single)["relevance"]
    torch.testing.assert_close(alone[0, :length], logits[group, :length])


def test_paper_profile_builds_the_library_default(datamodule):
    net = make_net(datamodule, profile="paper")
    model = net.model
    assert model.cls_embedding.weight.shape == (192,)
    assert len(model.backbone.blocks) == 3
    assert model.backbone.blocks[0]["attention"]._n_heads == 8
    assert model.backbone.blocks[0]["attention"].dropout.p == pytest.approx(0.2)
    assert model.backbone.blocks[0]["ffn"].dropout.p == pytest.approx(0.1)


def test_cpu_profile_and_overrides(datamodule):
    model = make_net(datamodule).model
    assert model.cls_embedding.weight.shape == (64,) and len(model.backbone.blocks) == 2
    model = make_net(datamodule, profile="paper", n_blocks=1, d_block=32).model
    assert model.cls_embedding.weight.shape == (32,) and len(model.backbone.blocks) == 1
    with pytest.raises(ValueError, match="multiple of 8"):
        make_net(datamodule, d_block=60)
    with pytest.raises(ValueError, match="profile must be one of"):
        make_net(datamodule, profile="gpu")
