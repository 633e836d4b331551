"""The shared neural training setup: losses, validation NDCG, determinism, best-epoch restore."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.metrics import ndcg
from models.blocks import TabularInput, mlp
from models.neural import (
    NeuralRanker,
    RankingNet,
    TrainingSettings,
    listwise_softmax_loss,
    pointwise_loss,
)


class _Net(RankingNet):
    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.inputs = TabularInput(spec, 4)
        self.body, width = mlp(self.inputs.n_out, [16], 0.0)
        self.head = nn.Linear(width, 1)

    def forward(self, batch):
        return {"relevance": self.head(self.body(self.inputs(batch))).squeeze(-1)}


class _Ranker(NeuralRanker):
    module_class = _Net

    @dataclass(frozen=True)
    class Settings(TrainingSettings):
        max_epochs: int = 4


def _fit(datamodule, **config) -> _Ranker:
    ranker = _Ranker(config, seed=0)
    ranker.progress = False
    ranker.fit(datamodule)
    return ranker


def test_listwise_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0, 5.0]])
    labels = torch.tensor([[2.0, 1.0, 0.0, 4.0]])
    mask = torch.tensor([[True, True, True, False]])  # the last item is padding
    gains = np.array([3.0, 1.0, 0.0])
    log_softmax = np.array([2.0, 0.0, -1.0]) - np.log(np.exp([2.0, 0.0, -1.0]).sum())
    expected = -(gains / gains.sum() * log_softmax).sum()
    loss = listwise_softmax_loss(logits, labels, mask, graded=True)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_groups_without_a_positive_do_not_count():
    logits = torch.tensor([[1.0, 0.0], [3.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    alone = listwise_softmax_loss(logits[:1], labels[:1], mask[:1], graded=False)
    assert listwise_softmax_loss(logits, labels, mask, graded=False).item() == pytest.approx(
        alone.item()
    )


def test_pointwise_loss_ignores_padding():
    logits = torch.tensor([[0.0, 100.0]])
    labels = torch.tensor([[4.0, 0.0]])
    mask = torch.tensor([[True, False]])
    assert pointwise_loss(logits, labels, mask, graded=True).item() == pytest.approx(np.log(2))


def test_fit_is_deterministic_and_better_than_random(datamodule):
    first, second = _fit(datamodule), _fit(datamodule)
    scores = first.predict(datamodule, "test")
    np.testing.assert_array_equal(scores, second.predict(datamodule, "test"))
    test = datamodule.arrays("test")
    truth = test.labels["true_relevance"]
    assert (
        ndcg(truth, scores, test.group).mean
        > ndcg(truth, np.zeros_like(scores), test.group).mean + 0.01
    )


def test_the_best_epoch_is_restored_and_recorded(datamodule):
    ranker = _fit(datamodule, max_epochs=5, patience=5)
    history = ranker.training_summary["history"]
    assert len(history) == 5
    best = max(epoch["val_ndcg@10"] for epoch in history)
    assert ranker.training_summary["best_val_ndcg@10"] == pytest.approx(best)


def test_bad_settings_are_clear_errors(datamodule):
    with pytest.raises(ValueError, match="lack"):
        _fit(datamodule, task_weights={"relevance": 1.0, "dwell_time": 1.0})
    with pytest.raises(ValueError, match="loss must be"):
        _fit(datamodule, loss="pairwise")


def test_a_ranking_score_that_reads_an_untrained_head_is_refused(datamodule):
    from models.dcn_v2 import DCNV2Net, DCNV2Ranker
    from models.mmoe import MMoENet, MMoERanker

    dcn = {**DCNV2Ranker.default_settings(), "score_task": "click"}
    with pytest.raises(ValueError, match="score_task 'click' has no head that trains"):
        DCNV2Net(datamodule.spec, dcn)
    mix = {**MMoERanker.default_settings(), "task_weights": {"relevance": 1.0, "click": 0.5}}
    with pytest.raises(ValueError, match="score_mix task.*'purchase' has no head that trains"):
        MMoENet(datamodule.spec, {**mix, "score_mix": {"relevance": 1.0, "purchase": 1.0}})
    assert isinstance(MMoENet(datamodule.spec, mix), torch.nn.Module)


def test_fit_leaves_the_process_as_it_found_it(datamodule):
    import logging

    from models import create_ranker

    logger = logging.getLogger("lightning.pytorch")
    before = (torch.are_deterministic_algorithms_enabled(), logger.level)
    ranker = create_ranker("dcn_v2", {"max_epochs": 1}, seed=0)
    ranker.progress = False
    ranker.fit(datamodule)
    assert (torch.are_deterministic_algorithms_enabled(), logger.level) == before
