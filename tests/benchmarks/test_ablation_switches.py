"""Each packaged ablation variant reaches the model or the data and removes what it names.

The model switches are checked on the network itself in tests/models/test_mtl_tinybert.py;
here, each variant's settings are built the way `rankbench ablate` builds them, and the
resulting model or DataModule is inspected on the tiny preset.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ablation import load_ablation, variant_spec
from benchmarks.config import load_spec
from benchmarks.runner import build_datamodule
from models import create_ranker

PLAN = load_ablation()
VARIANTS = {variant.name: variant for variant in PLAN.variants}


def settings_of(name: str, tiny_bert=None):
    model_config = {PLAN.model: {"encoder": str(tiny_bert)}} if tiny_bert is not None else None
    spec = load_spec(overrides={"preset": "tiny", "seeds": [0], "model_config": model_config})
    return variant_spec(spec, PLAN.model, VARIANTS[name])


@pytest.fixture(scope="module")
def full_datamodule():
    datamodule = build_datamodule(settings_of("full"), progress=False)
    datamodule.setup()
    return datamodule


def net_of(name: str, datamodule, tiny_bert):
    model_settings = settings_of(name, tiny_bert).ranker_settings(PLAN.model)
    return create_ranker(PLAN.model, model_settings).build_module(datamodule)


def test_model_variants_change_only_their_switch(full_datamodule, tiny_bert):
    full = net_of("full", full_datamodule, tiny_bert)
    assert full.tower.n_tuned == 1 and full.text_tokens.interactions
    assert net_of("frozen_encoder", full_datamodule, tiny_bert).tower.n_tuned == 0
    assert net_of("all_layers", full_datamodule, tiny_bert).tower.n_tuned == 3
    assert not net_of("no_interaction_tokens", full_datamodule, tiny_bert).text_tokens.interactions
    assert net_of("no_text", full_datamodule, tiny_bert).tower is None
    assert net_of("single_task", full_datamodule, tiny_bert).tasks == ("relevance",)
    assert set(full.tasks) == set(full_datamodule.spec.tasks)


def test_behavioural_targets_train_on_the_deepest_funnel_step(full_datamodule):
    datamodule = build_datamodule(settings_of("behavioural_targets"), progress=False)
    datamodule.setup()
    train = datamodule.arrays("train").labels
    deepest = np.maximum.reduce([train["click"], 2 * train["add_to_cart"], 3 * train["purchase"]])
    np.testing.assert_array_equal(train["relevance"], deepest)
    assert datamodule.split_hash == full_datamodule.split_hash
    # The derived labels are graded otherwise.
    full = full_datamodule.arrays("train").labels
    assert not np.array_equal(full["relevance"], deepest)


@pytest.mark.parametrize(
    ("name", "switch"),
    [("labels_no_debias", "debias"), ("labels_no_similarity", "use_similarity")],
)
def test_label_variants_turn_off_one_labeling_step(full_datamodule, name, switch):
    labeling = settings_of(name).data.labels.labeling
    reference = settings_of("full").data.labels.labeling
    assert getattr(labeling, switch) is False and getattr(reference, switch) is True
    assert {k for k in vars(labeling) if getattr(labeling, k) != getattr(reference, k)} == {switch}
    datamodule = build_datamodule(settings_of(name), progress=False)
    datamodule.setup()
    assert datamodule.split_hash == full_datamodule.split_hash
    assert not np.array_equal(
        datamodule.arrays("train").labels["relevance"],
        full_datamodule.arrays("train").labels["relevance"],
    )
