"""Benchmark settings: the packaged YAML defaults, the dataset's own defaults, a user's YAML
file, then the command line."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from datamodules import DataConfig, FeatureConfig, SplitConfig
from datamodules.labels import LabelConfig
from datamodules.sources import DATASET_OPTIONS, dataset_options, make_source
from datamodules.text_encoding import EncoderConfig
from datamodules.threads import resolve_threads
from labeling.relevance import LabelingConfig
from labeling.sampling import SamplingConfig

DEFAULTS = Path(__file__).parent / "configs" / "bench.yaml"
# The packaged models, in the packaged order: the order of a summary table's rows.
DEFAULT_MODELS = tuple(yaml.safe_load(DEFAULTS.read_text())["models"])

DATASET_DEFAULTS = {
    # ESCI's label gains (E 1.0, S 0.1, C 0.01, I 0) are the NDCG gains of its paper as they
    # are: 2^g - 1 would shrink S and C to a fraction of E's share.
    "esci": {"metrics": {"gain": "linear"}},
}
"""Settings a dataset changes from the packaged defaults; the user's file and the command
line still override them."""


def load_config(
    path: str | Path | None = None,
    overrides: dict | None = None,
    assignments: list[str] | None = None,
) -> dict:
    """Defaults <- the dataset's defaults <- file <- ``overrides`` (command-line options) <-
    ``key.sub=value`` pairs. The dataset is the one the last of them names."""
    layers = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file not found: {path}")
        layers.append((_yaml(path.read_text(), str(path)) or {}, str(path)))
    layers.append(({k: v for k, v in (overrides or {}).items() if v is not None}, "options"))
    layers += [(parse_assignment(assignment), "--set") for assignment in assignments or []]
    defaults = yaml.safe_load(DEFAULTS.read_text())
    config = _layered(defaults, layers)
    if config["dataset"] in DATASET_DEFAULTS:
        defaults = merge(defaults, DATASET_DEFAULTS[config["dataset"]], "dataset defaults")
        config = _layered(defaults, layers)
    _check_types(config)
    if not config.get("name"):
        config["name"] = default_name(config)
    return config


def _layered(config: dict, layers: list[tuple[dict, str]]) -> dict:
    for update, source in layers:
        config = merge(config, update, source)
    return config


def _yaml(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{source}: not valid YAML ({first})") from None


def _check_types(config: dict) -> None:
    """The settings the driver reads directly (the rest go through typed dataclasses)."""
    if not isinstance(config["models"], list) or not all(
        isinstance(m, str) for m in config["models"]
    ):
        raise ValueError("models must be a list of model names, e.g. [xgboost]")
    if not isinstance(config["seeds"], list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in config["seeds"]
    ):
        raise ValueError("seeds must be a list of integers, e.g. [0, 1, 2]")
    if not isinstance(config.get("model_config") or {}, dict):
        raise ValueError("model_config must map model names to their settings")
    check_model_settings(config.get("model_config") or {})
    dataset_options(config["dataset"], config.get("dataset_options"))
    resolve_threads(config.get("threads"))
    ks = config["metrics"]["ks"]
    if not isinstance(ks, list) or not ks or not all(isinstance(k, int) and k > 0 for k in ks):
        raise ValueError("metrics.ks must be a list of positive integers, e.g. [1, 3, 5, 10]")


def check_model_settings(model_config: dict) -> None:
    """Every model named under ``model_config`` is registered and every setting is one it
    has, of its type: one-line errors before any data work."""
    from models import REGISTRY, get_ranker

    for name, settings in model_config.items():
        if name not in REGISTRY:
            raise ValueError(
                f"model_config.{name}: unknown model; registered: {', '.join(sorted(REGISTRY))}"
            )
        if not isinstance(settings or {}, dict):
            raise ValueError(f"model_config.{name} must be a mapping of settings")
        get_ranker(name)(settings or {})  # unknown settings and wrong types raise here


def default_name(config: dict) -> str:
    """``simulator-<preset>``, ``retrotech``, ``logdir-<folder name>``,
    ``files-<mapping's folder>-<mapping file name>``, ``letor-<parent>-<folder name>`` (so
    ``MQ2008/Fold1`` and ``MSLR-WEB10K/Fold1``, or two ``map.yaml`` files, do not share one
    results folder), ``esci-<locale>-<version>`` or ``wands``."""
    if config["dataset"] == "simulator":
        return f"simulator-{config.get('preset') or 'default'}"
    if config["dataset"] == "esci":
        options = {**DATASET_OPTIONS["esci"], **(config.get("dataset_options") or {})}
        return f"esci-{options['locale']}-{options['version']}"
    if config["dataset"] == "logdir" and config.get("data_path"):
        return f"logdir-{Path(config['data_path']).name}"
    if config["dataset"] == "letor" and config.get("data_path"):
        folder = Path(config["data_path"]).resolve()
        return f"letor-{folder.parent.name}-{folder.name}"
    if config["dataset"] == "files" and config.get("data_path"):
        mapping = Path(config["data_path"]).resolve()
        return f"files-{mapping.parent.name}-{mapping.stem}"
    return config["dataset"]


# Sections whose keys the driver reads itself; the others are checked by their dataclasses
# (data.*) or are open by nature (model_config, simulator).
CLOSED_SECTIONS = ("metrics", "wandb")


def merge(base: dict, update: dict, source: str) -> dict:
    """Deep-merge ``update`` into a copy of ``base``; unknown keys at the top level and in
    the closed sections are an error."""
    if not isinstance(update, dict):
        raise ValueError(f"{source}: expected a mapping of settings")
    unknown = sorted(set(update) - set(base))
    if source and unknown:
        raise ValueError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            inner_source = f"{source}: {key}" if source and key in CLOSED_SECTIONS else ""
            merged[key] = merge(merged[key], value, inner_source)
        else:
            merged[key] = value
    return merged


def parse_assignment(text: str) -> dict:
    """``data.split.seed=3`` -> ``{"data": {"split": {"seed": 3}}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    nested: dict = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = _yaml(value, f"--set {key}")
    return nested


def source_from_config(config: dict, progress: bool = False):
    """The dataset source a config names (simulator preset, log folder, adapter)."""
    return make_source(
        config["dataset"],
        preset=config.get("preset"),
        path=config.get("data_path"),
        overrides=config.get("simulator"),
        progress=progress,
        options=config.get("dataset_options"),
    )


def data_config(config: dict) -> DataConfig:
    data = config["data"]
    try:
        features = _tuples(
            data.get("features", {}), ("text_columns", "log1p_columns", "user_affinity_columns")
        )
        labels = dict(data.get("labels", {}))
        labeling = _tuples(labels.pop("labeling", {}), ("grade_cuts",))
        return DataConfig(
            split=SplitConfig(**data.get("split", {})),
            features=FeatureConfig(**features),
            labels=LabelConfig(
                labeling=LabelingConfig(**labeling),
                encoder=EncoderConfig(**labels.pop("encoder", {})),
                sampling=SamplingConfig(**labels.pop("sampling", {})),
                **labels,
            ),
            batch_size=int(data.get("batch_size", 64)),
        )
    except TypeError as error:
        raise ValueError(f"data settings: {error}") from None


def _tuples(settings: dict, keys) -> dict:
    """YAML lists -> tuples, so settings stay hashable and compare equal."""
    settings = dict(settings)
    for key in keys:
        if key in settings and settings[key] is not None:
            settings[key] = tuple(settings[key])
    return settings
