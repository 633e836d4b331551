"""MTL-TinyBERT on tiny data with a tiny random BERT: the contract, the text tower's cache,
frozen layers staying frozen, and each ablation switch removing what it names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from datamodules.text_encoding import EncoderConfig, TextEncoder, mean_pool
from models.base import create_ranker
from models.mtl_tinybert import MTLTinyBERTNet, MTLTinyBERTRanker, TextTokens, resolved_profile
from models.text_tower import TextTower, frozen_states
from tests.models.conftest import QUALITY_BARS, margin_over_random

N_LAYERS = 3  # of the tiny BERT


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def config(tiny_bert):
    return {"encoder": str(tiny_bert), "max_epochs": 3, "lr": 1e-3}


def fitted_ranker(datamodule, config, seed=0):
    ranker = create_ranker("mtl_tinybert", config, seed=seed)
    ranker.progress = False
    ranker.fit(datamodule)
    return ranker


@pytest.fixture(scope="module")
def fitted(datamodule, config):
    return fitted_ranker(datamodule, config)


@pytest.fixture(scope="module")
def batch(datamodule):
    return next(iter(datamodule.loader("val")))


def make_net(datamodule, config, **settings) -> MTLTinyBERTNet:
    ranker = MTLTinyBERTRanker({**config, **settings})
    return ranker.build_module(datamodule)


def direct_vectors(folder, texts: list[str]) -> np.ndarray:
    """Mean-pooled last hidden states of the whole encoder, straight from transformers."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    return mean_pool(hidden, inputs["attention_mask"]).numpy()


# --------------------------------------------------------------------------- the contract


def test_predict_gives_one_finite_score_per_row_and_every_task(datamodule, fitted):
    for split in ("val", "test"):
        scores = fitted.predict(datamodule, split)
        assert scores.shape == (datamodule.arrays(split).n_rows,)
        assert np.isfinite(scores).all() and np.unique(scores).size > 1
    tasks = fitted.predict_tasks(datamodule, "test")
    assert set(tasks) == set(datamodule.spec.tasks)
    np.testing.assert_array_equal(tasks["relevance"], fitted.predict(datamodule, "test"))
    assert 1 <= fitted.training_summary["epochs"] <= 3


def test_same_seed_same_scores(datamodule, config, fitted):
    again = fitted_ranker(datamodule, config)
    np.testing.assert_array_equal(
        again.predict(datamodule, "test"), fitted.predict(datamodule, "test")
    )


def test_better_than_random_on_true_relevance(datamodule, fitted):
    assert margin_over_random(datamodule, fitted) > QUALITY_BARS["mtl_tinybert"]


# --------------------------------------------------------------------------- the text tower


@pytest.mark.parametrize("layers", [0, 1, 2, "all"])
def test_cached_tower_equals_the_whole_encoder(datamodule, tiny_bert, layers):
    texts = datamodule.texts[:40]
    encoder = TextEncoder(EncoderConfig(name=str(tiny_bert)))
    tower = TextTower(texts, np.arange(len(texts)), encoder, layers)
    tower.eval()  # no dropout
    with torch.no_grad():
        vectors = tower(torch.arange(len(texts))).numpy()
    np.testing.assert_allclose(vectors, direct_vectors(tiny_bert, texts), atol=1e-5)
    # Any subset, in any order, gives the same vectors: a text does not depend on its batch.
    ids = torch.tensor([7, 3, 3, 31, 0])
    with torch.no_grad():
        np.testing.assert_allclose(tower(ids).numpy(), vectors[ids.numpy()], atol=1e-5)


def test_tuned_layers_run_once_per_unique_text_of_a_batch(datamodule, config, batch):
    net = make_net(datamodule, config)
    before = net.tower.stats["texts_through_tuned_layers"]
    net(batch)
    ids = batch.text_ids[batch.mask][:, [0, 1]]  # query and title: the cpu profile's fields
    assert net.tower.stats["texts_through_tuned_layers"] - before == len(torch.unique(ids))


def test_frozen_layers_stay_frozen(datamodule, config, fitted, tiny_bert):
    tower = fitted.module.tower
    assert tower.n_tuned == 1
    trainable = {name for name, p in fitted.module.named_parameters() if p.requires_grad}
    assert any(name.startswith("tower.tuned.0.") for name in trainable)
    assert not any(name.startswith("tower.") and ".tuned." not in name for name in trainable)
    # The cached lower-layer outputs are still those of the original encoder ...
    encoder = TextEncoder(EncoderConfig(name=str(tiny_bert)))
    texts = [datamodule.texts[i] for i in range(len(datamodule.texts)) if tower._row_of[i] >= 0]
    fresh = frozen_states(encoder.model, encoder.tokenizer, texts, N_LAYERS - 1, 32)
    torch.testing.assert_close(tower._cache.states, fresh.states)
    # ... and the frozen pooled vectors too, while the tuned top layer has moved.
    np.testing.assert_allclose(tower._frozen.numpy(), encoder.encode(datamodule.texts), atol=1e-6)
    original = encoder.model.encoder.layer[-1].state_dict()
    tuned = tower.tuned[0].state_dict()
    assert any(not torch.equal(original[k], tuned[k]) for k in original)


def test_a_frozen_encoder_has_no_trainable_text_parameters(datamodule, config, batch, tiny_bert):
    net = make_net(datamodule, config, fine_tune_layers=0)
    assert net.tower.n_tuned == 0 and not list(net.tower.parameters())
    ids = batch.text_ids[batch.mask]
    vectors = net.text_vectors(ids)
    expected = TextEncoder(EncoderConfig(name=str(tiny_bert))).encode(
        [datamodule.texts[i] for i in ids[:, 1].tolist()]
    )
    np.testing.assert_allclose(vectors["title"].numpy(), expected, atol=1e-6)


def test_all_layers_tunes_every_transformer_layer(datamodule, config):
    net = make_net(datamodule, config, fine_tune_layers="all")
    assert net.tower.n_tuned == N_LAYERS and len(net.tower.tuned) == N_LAYERS


# --------------------------------------------------------------------------- ablation switches


def n_tokens(net: MTLTinyBERTNet, batch) -> int:
    return net.tokens(batch).shape[1]


def test_text_switch_removes_the_text_tower_and_its_tokens(datamodule, config, batch):
    spec = datamodule.spec
    net = make_net(datamodule, config, text=False)
    assert net.tower is None
    names = [name for name, _ in net.named_parameters()]
    assert not any(name.startswith(("tower.", "text_tokens.")) for name in names)
    assert n_tokens(net, batch) == 1 + spec.n_numeric + len(spec.cardinalities)
    # Scores do not depend on the texts at all ...
    other = dataclasses.replace(batch, text_ids=torch.roll(batch.text_ids, 1, dims=1))
    net.eval()
    torch.testing.assert_close(net(batch)["relevance"], net(other)["relevance"])
    # ... while with text they do.
    with_text = make_net(datamodule, config).eval()
    assert not torch.allclose(with_text(batch)["relevance"], with_text(other)["relevance"])


def test_interaction_switch_keeps_only_query_and_product_tokens(datamodule, config, batch):
    full = make_net(datamodule, config)
    plain = make_net(datamodule, config, interaction_tokens=False)
    products = full.text_tokens.product_fields
    assert products == ["title", "description"]
    assert full.text_tokens.n_tokens == 1 + 4 * len(products)
    assert plain.text_tokens.n_tokens == 1 + len(products)
    assert n_tokens(full, batch) - n_tokens(plain, batch) == 3 * len(products)
    assert not hasattr(plain.text_tokens, "product_tokens")


def test_text_tokens_are_what_they_say():
    torch.manual_seed(0)
    tokens = TextTokens(4, 8, ["title"], interactions=True)
    q, t = torch.randn(3, 4), torch.randn(3, 4)
    out = tokens({"query": q, "title": t})
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out[:, 0], tokens.field_tokens["query"](q))
    torch.testing.assert_close(out[:, 1], tokens.field_tokens["title"](t))
    torch.testing.assert_close(out[:, 2], tokens.product_tokens["title"](q * t))
    torch.testing.assert_close(out[:, 3], tokens.difference_tokens["title"]((q - t).abs()))
    cosine = torch.nn.functional.cosine_similarity(q, t, dim=-1).unsqueeze(-1)
    torch.testing.assert_close(out[:, 4:], tokens.cosine_tokens(cosine))


def test_single_task_has_one_head_and_one_loss(datamodule, config, batch):
    net = make_net(datamodule, config, task_weights={"relevance": 1.0})
    assert net.tasks == ("relevance",)
    assert set(net(batch)) == {"relevance"}
    assert set(net.heads.towers) == {"relevance"}
    multi = make_net(datamodule, config)
    assert set(multi.heads.towers) == set(datamodule.spec.tasks)


def test_uncertainty_weighting_learns_a_weight_per_task(datamodule, config, batch):
    net = make_net(datamodule, config, uncertainty_weighting=True)
    losses = {"relevance": torch.tensor(2.0), "click": torch.tensor(1.0)}
    with torch.no_grad():
        net.log_variances["relevance"].fill_(np.log(2.0))
    expected = 1.0 * (2.0 / 2.0 + np.log(2.0)) + 0.5 * (1.0 + 0.0)
    assert float(net.combine_losses(losses)) == pytest.approx(expected)
    loss = net.training_step(batch, 0)
    loss.backward()
    assert all(p.grad is not None for p in net.log_variances.values())


def test_bad_settings_are_one_line_errors(datamodule, config):
    with pytest.raises(ValueError, match="fine_tune_layers must be 0..3"):
        make_net(datamodule, config, fine_tune_layers=4)
    # A text field the model does not know: refused by its settings, and by the profile's
    # own check for a config built by hand.
    with pytest.raises(ValueError, match="tuned_fields.* must be one of query, title, desc"):
        make_net(datamodule, config, tuned_fields=["query", "tittle"])
    defaults = MTLTinyBERTRanker.default_settings()
    with pytest.raises(ValueError, match="tuned_fields: unknown text field"):
        resolved_profile({**defaults, "tuned_fields": ["query", "tittle"]})
    with pytest.raises(ValueError, match="profile must be one of cpu, gpu"):
        make_net(datamodule, config, profile="laptop")
    with pytest.raises(ValueError, match="score_task 'relevance' has no head"):
        make_net(datamodule, config, task_weights={"click": 1.0})


def test_heads_read_the_cls_output_through_the_ft_heads_normalisation(datamodule, config, batch):
    net = make_net(datamodule, config).eval()
    seen = {}
    net.cls_norm.register_forward_hook(lambda module, args, out: seen.update(out=out))
    net(batch)
    normalised = seen["out"]
    assert isinstance(net.cls_norm[0], torch.nn.LayerNorm) and (normalised >= 0).all()  # ReLU
    assert normalised.shape == (int(batch.mask.sum()), net.cls_token.shape[0])
