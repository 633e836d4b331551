"""Debiasing inside the loss (``loss: ips_listwise`` and ``loss: dla``) for every neural ranker."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from datamodules import SearchLogDataModule
from datamodules.features import FeatureConfig
from datamodules.labels import LabelConfig
from datamodules.search_log import DataConfig
from datamodules.sources import LetorSource, SimulatorSource
from labeling.propensity import PropensityEstimate, estimate_propensities
from models import create_ranker
from models.blocks import TabularInput, mlp
from models.neural import NeuralRanker, RankingNet, TrainingSettings
from models.unbiased_losses import InversePropensityLoss, weighted_softmax_loss
from tests.models.conftest import margin_over_random


class _ClickNet(RankingNet):
    """A user's baseline: nothing in it knows about debiasing."""

    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.inputs = TabularInput(spec, 4)
        self.body, width = mlp(self.inputs.n_out, [16], 0.0)
        self.heads = nn.ModuleDict({task: nn.Linear(width, 1) for task in self.task_weights})

    def forward(self, batch):
        hidden = self.body(self.inputs(batch))
        return {task: head(hidden).squeeze(-1) for task, head in self.heads.items()}


class _ClickRanker(NeuralRanker):
    module_class = _ClickNet

    @dataclass(frozen=True)
    class Settings(TrainingSettings):
        task_weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0})
        score_task: str = "click"
        max_epochs: int = 10
        patience: int = 10


def _simulated(preset: str) -> SearchLogDataModule:
    """The simulator at a preset (position bias 1/k) without the text encoder, which would take
    most of this file's time and is beside the point here."""
    config = DataConfig(
        features=FeatureConfig(text_similarity=False), labels=LabelConfig(relevance="behavioural")
    )
    datamodule = SearchLogDataModule(SimulatorSource(preset), config)
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def tiny_log() -> SearchLogDataModule:
    return _simulated("tiny")  # 200 requests of 8


@pytest.fixture(scope="module")
def ci_log() -> SearchLogDataModule:
    return _simulated("ci")  # 2,000 requests of 10


def _fit(ranker, datamodule):
    ranker.progress = False
    ranker.fit(datamodule)
    return ranker


# --------------------------------------------------------------------------- IPS


def test_ips_loss_matches_a_hand_computation():
    ips = InversePropensityLoss(np.array([1.0, 0.5, 0.02]), clip=0.05)
    logits = torch.tensor([[2.0, 0.0, -1.0, 5.0], [1.0, 1.0, 0.0, 0.0]])
    clicks = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    position = torch.tensor([[1, 2, 3, 0], [2, 1, 0, 0]])
    mask = position > 0
    log_softmax = np.array([2.0, 0.0, -1.0]) - np.log(np.exp([2.0, 0.0, -1.0]).sum())
    # Weights 1/1, 1/0.5 and 1/max(0.02, 0.05); the click-less group counts in the mean.
    expected = -(np.array([1.0, 2.0, 20.0]) * log_softmax).sum() / 2
    assert ips(logits, clicks, position, mask).item() == pytest.approx(expected, rel=1e-6)


def test_clipping_and_its_count():
    curve = pl.DataFrame(
        {
            "position": pl.Series([1, 2, 3, 4], dtype=pl.Int32),
            "propensity": [1.0, 0.5, 0.02, None],  # 4: not estimated, takes 3's value
            "evidence": pl.Series([50, 50, 50, 0], dtype=pl.Int64),
            "source": ["intervention"] * 3 + ["filled"],
        }
    )
    estimate = PropensityEstimate(curve, "intervention", ["a note"])
    train_positions = np.array([1, 2, 3, 4, 4, 5, 1, 2])  # 5: beyond the curve, takes 4's
    ips = InversePropensityLoss.from_estimate(estimate, 0.05, train_positions)
    np.testing.assert_allclose(ips.weights.numpy(), [1.0, 2.0, 20.0, 20.0, 20.0])
    summary = json.loads(json.dumps(ips.summary))  # the run record holds it as it is
    assert summary == {
        "loss": "ips_listwise",
        "propensity_clip": 0.05,
        "propensity_method": "intervention",
        "propensity_curve": [1.0, 0.5, 0.02, None],
        "propensity_source": ["intervention", "intervention", "intervention", "filled"],
        "propensity_notes": ["a note"],
        "training_impressions": 8,
        "clipped_impressions": 4,
    }


def test_with_true_propensities_the_ips_gradient_is_unbiased():
    """Position-based clicks on one list of 5 items shown in a fixed order: averaged over many
    click draws, the IPS loss's gradient is the gradient of the same loss on the true
    relevance; the unweighted one is not."""
    theta = torch.tensor([1.0, 0.5, 1 / 3, 0.25, 0.2])  # examination of positions 1-5
    relevance = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.1])  # P(click | examined)
    n_draws = 200_000
    generator = torch.Generator().manual_seed(0)
    clicks = (torch.rand(n_draws, 5, generator=generator) < theta * relevance).float()
    position = torch.arange(1, 6).expand(n_draws, 5)
    mask = torch.ones(n_draws, 5, dtype=torch.bool)
    scores = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.5], requires_grad=True)

    def gradient(loss_of_logits) -> torch.Tensor:
        (grad,) = torch.autograd.grad(loss_of_logits(scores.expand(n_draws, 5)), scores)
        return grad

    ips = InversePropensityLoss(theta.numpy(), clip=0.05)  # no propensity is clipped here
    ips_gradient = gradient(lambda logits: ips(logits, clicks, position, mask))
    naive = gradient(lambda logits: weighted_softmax_loss(logits, clicks, 1.0, mask))
    true = gradient(lambda logits: -(relevance * torch.log_softmax(logits[:1], dim=1)).sum())
    # Measured: IPS within 0.005 of the true gradient, the naive one 0.3 away.
    assert (ips_gradient - true).abs().max() < 0.02
    assert (naive - true).abs().max() > 0.2
    # The same for the per-item targets the weights make: clicks / theta estimates relevance.
    np.testing.assert_allclose((clicks / theta).mean(0).numpy(), relevance.numpy(), atol=0.01)
    assert (clicks.mean(0) - relevance).abs().max() > 0.3


def test_a_multi_task_model_trained_with_ips_on_clicks_beats_random(tiny_log):
    settings = {"loss": "ips_listwise", "task_weights": {"click": 1}, "score_task": "click"}
    ranker = _fit(create_ranker("mmoe", settings, seed=0), tiny_log)
    scores = ranker.predict(tiny_log, "test")
    assert scores.shape == (tiny_log.arrays("test").n_rows,) and np.isfinite(scores).all()
    assert margin_over_random(tiny_log, ranker) > 0.05  # measured 0.06-0.07 (seeds 0-2)
    # The propensities come from the suite's estimator on the training part of the log only.
    summary = json.loads(json.dumps(ranker.training_summary))["debiasing"]
    train_ids = pl.Series(tiny_log.arrays("train").request_id).implode()
    train_log = tiny_log.log.impressions.filter(pl.col("request_id").is_in(train_ids))
    expected = estimate_propensities(train_log, method="auto")
    assert summary["propensity_curve"] == expected.curve["propensity"].to_list()
    assert summary["propensity_method"] == expected.method
    assert summary["training_impressions"] == tiny_log.arrays("train").n_rows
    assert 0 <= summary["clipped_impressions"] <= summary["training_impressions"]


# --------------------------------------------------------------------------- DLA


def test_the_dla_tower_learns_a_decreasing_propensity_curve(ci_log):
    ranker = _fit(_ClickRanker({"loss": "dla"}, seed=0), ci_log)
    learned = np.array(ranker.training_summary["debiasing"]["learned_propensity"])
    truth = ci_log.log.truth.examination.sort("position")["examination"].to_numpy()
    assert learned[0] == pytest.approx(1.0)
    # Decreasing, up to 0.05 of noise between neighbours; within 0.15 of the true 1/k.
    # Measured on seeds 0-2 of the ranker and the simulator: rises of at most 0.015,
    # errors of at most 0.085 (the deepest positions come out a little low).
    assert np.all(np.diff(learned) < 0.05)
    assert np.abs(learned - truth).max() < 0.15
    assert margin_over_random(ci_log, ranker) > 0.02


def test_the_tower_trains_beside_any_optimizer_and_never_changes_predictions(tiny_log):
    # FT-Transformer makes its own parameter groups, which know nothing of the tower.
    settings = {"loss": "dla", "task_weights": {"click": 1}, "score_task": "click"}
    ranker = _fit(create_ranker("ft_transformer", {**settings, "max_epochs": 2}), tiny_log)
    assert min(ranker.training_summary["debiasing"]["learned_propensity"]) < 0.9
    scores = ranker.predict(tiny_log, "test")
    assert scores.shape == (tiny_log.arrays("test").n_rows,)
    assert set(ranker.predict_tasks(tiny_log, "test")) == {"click"}
    ranker.module.debiasing = None  # the ranker alone
    np.testing.assert_array_equal(ranker.predict(tiny_log, "test"), scores)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", ["mmoe", "dcn_v2", "ft_transformer"])
def test_no_forward_pass_reads_the_position(tiny_log, name):
    module = create_ranker(name, seed=0).build_module(tiny_log).eval()
    batch = next(iter(tiny_log.loader("test")))
    generator = torch.Generator().manual_seed(0)
    shuffled = torch.randint(-5, 50, batch.position.shape, generator=generator)
    with torch.no_grad():
        outputs = module(batch)
        moved = module(dataclasses.replace(batch, position=shuffled))
    for task, logits in outputs.items():
        torch.testing.assert_close(moved[task], logits, rtol=0, atol=0)


def _judged(folder) -> SearchLogDataModule:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, queries in (("train", range(1, 13)), ("test", range(13, 17))):
        lines = [
            f"{rng.integers(0, 3)} qid:{q} 1:{rng.normal():.3f} 2:{rng.normal():.3f}"
            for q in queries
            for _ in range(4)
        ]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    datamodule = SearchLogDataModule(LetorSource(str(folder)))
    datamodule.setup()
    return datamodule


@pytest.mark.parametrize("loss", ["ips_listwise", "dla"])
def test_bad_input_is_a_one_line_error(tiny_log, tmp_path, loss):
    judged = _judged(tmp_path / "letor")
    ranker = create_ranker("dcn_v2", {"loss": loss, "max_epochs": 1}, seed=0)
    with pytest.raises(ValueError, match=f"loss '{loss}' needs logged positions") as error:
        ranker.fit(judged)
    assert "\n" not in str(error.value) and not hasattr(ranker, "module")  # nothing was built
    with pytest.raises(ValueError, match=f"loss '{loss}' needs a click-type task") as error:
        _fit(create_ranker("dcn_v2", {"loss": loss, "max_epochs": 1}, seed=0), tiny_log)
    assert "\n" not in str(error.value)
    for clip in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"propensity_clip must lie in \(0, 1\]") as error:
            create_ranker("mmoe", {"loss": loss, "propensity_clip": clip})
        assert "\n" not in str(error.value)
