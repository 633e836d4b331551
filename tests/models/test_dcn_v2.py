"""DCN-V2: its cross layer, and the ranker through the model contract on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import create_ranker
from models.dcn_v2 import CrossLayerV2, CrossNetworkV2, DCNV2Net, DCNV2Ranker
from tests.models.conftest import QUALITY_BARS, margin_over_random

CONFIG = {"max_epochs": 4}


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- cross layers


@pytest.mark.parametrize("low_rank, n_experts", [(None, 1), (4, 1), (4, 3)])
def test_cross_layer_keeps_the_shape(low_rank, n_experts):
    torch.manual_seed(0)
    layer = CrossLayerV2(12, low_rank=low_rank, n_experts=n_experts)
    x0 = torch.randn(5, 7, 12)
    out = layer(x0, layer(x0, x0))
    assert out.shape == (5, 7, 12)
    assert torch.isfinite(out).all()
    network = CrossNetworkV2(12, 3, low_rank=low_rank, n_experts=n_experts)
    assert network(x0).shape == (5, 7, 12)


def test_full_rank_layer_is_the_papers_formula():
    torch.manual_seed(0)
    layer = CrossLayerV2(6)
    x0, x = torch.randn(4, 6), torch.randn(4, 6)
    expected = x0 * (x @ layer.linear.weight.T + layer.linear.bias) + x
    torch.testing.assert_close(layer(x0, x), expected)


def test_zero_weights_make_the_identity():
    torch.manual_seed(0)
    x0, x = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    full = CrossLayerV2(8)
    torch.nn.init.zeros_(full.linear.weight)
    torch.nn.init.zeros_(full.linear.bias)
    torch.testing.assert_close(full(x0, x), x)
    mixture = CrossLayerV2(8, low_rank=2, n_experts=3)
    torch.nn.init.zeros_(mixture.U)  # bias starts at zero
    torch.testing.assert_close(mixture(x0, x), x)


def test_low_rank_has_fewer_parameters_when_the_rank_is_small():
    d = 256
    full = n_parameters(CrossLayerV2(d))
    assert full == d * d + d
    assert n_parameters(CrossLayerV2(d, low_rank=8, n_experts=4)) < full / 3
    assert n_parameters(CrossLayerV2(d, low_rank=8, activation=None)) == 2 * d * 8 + d


def test_mixture_gate_weights_experts():
    # Two experts, one silenced: the layer's cross is the other expert's, halved by the gate
    # when the gate is uniform.
    torch.manual_seed(0)
    layer = CrossLayerV2(4, low_rank=2, n_experts=2, activation=None)
    torch.nn.init.zeros_(layer.gate.weight)
    torch.nn.init.zeros_(layer.gate.bias)
    with torch.no_grad():
        layer.U[1].zero_()
    x0, x = torch.randn(3, 4), torch.randn(3, 4)
    expected = 0.5 * x0 * (x @ layer.V[0] @ layer.U[0]) + x
    torch.testing.assert_close(layer(x0, x), expected)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="low_rank"):
        CrossLayerV2(4, low_rank=0)
    with pytest.raises(ValueError, match="activation"):
        CrossLayerV2(4, low_rank=2, activation="gelu")


# --------------------------------------------------------------------------- the ranker


def fit(datamodule, config=CONFIG, seed=0):
    ranker = create_ranker("dcn_v2", config, seed=seed)
    ranker.progress = False
    ranker.fit(datamodule)
    return ranker


@pytest.fixture(scope="module")
def fitted(datamodule):
    return fit(datamodule)


def test_registered():
    assert isinstance(create_ranker("dcn_v2"), DCNV2Ranker)


def test_predict_gives_one_finite_score_per_row(datamodule, fitted):
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert np.isfinite(scores).all()
    assert set(fitted.predict_tasks(datamodule, "test")) == {"relevance"}
    summary = fitted.training_summary
    assert 1 <= summary["epochs"] <= CONFIG["max_epochs"]
    assert 0.0 <= summary["best_val_ndcg@10"] <= 1.0


def test_same_seed_same_scores(datamodule, fitted):
    again = fit(datamodule)
    np.testing.assert_array_equal(
        again.predict(datamodule, "test"), fitted.predict(datamodule, "test")
    )


def test_better_than_random_on_true_relevance(datamodule, fitted):
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS["dcn_v2"]


@pytest.mark.parametrize(
    "settings",
    [
        {"structure": "parallel"},
        {"structure": "stacked", "low_rank": 4, "n_experts": 2},
        {"structure": "parallel", "low_rank": 4, "low_rank_activation": None},
    ],
)
def test_structures_and_low_rank_train(datamodule, settings):
    ranker = fit(datamodule, {**CONFIG, **settings, "max_epochs": 1})
    assert np.isfinite(ranker.predict(datamodule, "test")).all()


def test_parallel_head_sees_cross_and_deep(datamodule):
    config = {**DCNV2Ranker.default_settings(), "structure": "parallel", "deep_layers": [16]}
    net = DCNV2Net(datamodule.spec, config)
    assert net.heads["relevance"].in_features == net.input.n_out + 16
    batch = next(iter(datamodule.loader("val")))
    assert net(batch)["relevance"].shape == batch.mask.shape


def test_one_head_per_weighted_task(datamodule):
    weights = {"relevance": 1.0, "click": 0.5}
    net = DCNV2Net(datamodule.spec, {**DCNV2Ranker.default_settings(), "task_weights": weights})
    batch = next(iter(datamodule.loader("val")))
    assert set(net(batch)) == {"relevance", "click"}


def test_unknown_structure_is_refused(datamodule):
    with pytest.raises(ValueError, match="structure"):
        DCNV2Net(datamodule.spec, {**DCNV2Ranker.default_settings(), "structure": "sideways"})
