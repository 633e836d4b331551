"""The run specification: built once, typed, every default in one place."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from benchmarks.config import DEFAULTS_FILE, load_spec
from benchmarks.spec import RunSpec, TuneSpec
from datamodules import DataConfig
from datamodules.settings import as_mapping
from models import REGISTRY


def test_the_packaged_yaml_shows_exactly_the_defaults():
    documented = yaml.safe_load(DEFAULTS_FILE.read_text())
    # The file lists every packaged model with no settings of its own, as a place to add them.
    assert documented["model_config"] == {model: {} for model in RunSpec().models}
    documented["model_config"] = {}
    assert documented == RunSpec().as_mapping()


def test_the_spec_without_settings_is_the_dataclasses_defaults():
    spec = load_spec()
    assert spec.data == DataConfig()
    assert spec.name == "simulator-default" and spec.models == RunSpec().models
    assert spec.folder.as_posix() == "results/simulator-default"


def test_numbers_in_scientific_notation_are_numbers_in_every_section():
    spec = load_spec(
        assignments=[
            "model_config.dcn_v2.lr=1e-4",
            "metrics.alpha=1e-2",
            "data.labels.labeling.similarity_weight=3e-1",
            "simulator.click_noise=5e-2",
            "data.batch_size=1.28e2",
        ]
    )
    assert spec.model_config["dcn_v2"] == {"lr": 0.0001}
    assert spec.ranker_settings("dcn_v2").lr == 0.0001
    assert spec.metrics.alpha == 0.01 and spec.data.labels.labeling.similarity_weight == 0.3
    assert spec.data.batch_size == 128 and isinstance(spec.data.batch_size, int)
    from benchmarks.config import source_for

    assert source_for(spec).config().click_noise == 0.05


def test_an_unknown_key_names_its_file_and_place(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  labels:\n    labeling:\n      debais: false\n")
    with pytest.raises(ValueError) as error:
        load_spec(path)
    assert str(error.value).startswith(
        f"{path}: data.labels.labeling: unknown setting(s) debais; known: "
    )


def test_layers_override_in_order(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("seeds: [4]\nmetrics: {ks: [5]}\npreset: tiny\n")
    spec = load_spec(path, {"seeds": [7]}, ["metrics.ks=[3]"])
    assert spec.seeds == (7,) and spec.metrics.ks == (3,) and spec.preset == "tiny"
    assert spec.name == "simulator-tiny"


def test_every_packaged_ranker_declares_typed_settings():
    for name, ranker in REGISTRY.items():
        assert dataclasses.is_dataclass(ranker.Settings), name
        assert as_mapping(ranker.Settings()) == ranker.default_settings()


def test_a_changed_copy_leaves_the_original_alone():
    spec = load_spec(overrides={"preset": "tiny"})
    other = spec.changed(seeds=(9,))
    assert other.seeds == (9,) and spec.seeds == (0, 1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seeds = (1,)


def test_the_tuning_budget_is_a_typed_section():
    spec = load_spec(assignments=["tune.trials=5e1", "tune.timeout_s=null", "tune.sampler=random"])
    assert (spec.tune.trials, spec.tune.timeout_s, spec.tune.sampler) == (50, None, "random")
    assert isinstance(spec.tune.trials, int) and load_spec().tune == TuneSpec()
    with pytest.raises(ValueError, match=r"^tune\.trials must be at least 1"):
        load_spec(assignments=["tune.trials=0"])
    with pytest.raises(ValueError, match=r"tune\.sampler must be one of tpe, random"):
        load_spec(assignments=["tune.sampler=grid"])
