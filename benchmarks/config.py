"""The run specification of a command: the packaged defaults (``benchmarks/spec.py`` and the
dataclasses of its sections), the dataset's own defaults, a user's YAML file, then the
command line, merged once and typed once."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from benchmarks.spec import RunSpec, build_spec
from benchmarks.wandb_logging import MODES
from datamodules.sources import DATASET_OPTIONS, dataset_options, make_source
from datamodules.threads import available_cores, resolve_threads
from models import get_ranker
from models.devices import check_trainer, single_device

DEFAULTS_FILE = Path(__file__).parent / "configs" / "bench.yaml"
"""The defaults written out with their documentation: a file to copy and edit (a test keeps
it equal to the specification's defaults)."""

DATASET_DEFAULTS = {
    # ESCI's label gains (E 1.0, S 0.1, C 0.01, I 0) are the NDCG gains of its paper as they
    # are: 2^g - 1 would shrink S and C to a fraction of E's share.
    "esci": {"metrics": {"gain": "linear"}},
}
"""Settings a dataset changes from the packaged defaults; the user's file and the command
line still override them."""

# Sections whose keys are not fixed: a preset's overrides, a dataset's options, and the
# settings of each model (checked against the model's own ``Settings``).
OPEN_SECTIONS = ("simulator", "dataset_options", "model_config")


def load_spec(
    path: str | Path | None = None,
    overrides: dict | None = None,
    assignments: list[str] | None = None,
) -> RunSpec:
    """Defaults <- the dataset's defaults <- ``WANDB_MODE`` <- file <- ``overrides``
    (command-line options) <- ``key.sub=value`` pairs. The dataset is the one the last of them
    names. Every error is one line, before any data work."""
    layers = [environment_settings()]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file not found: {path}")
        layers.append((_yaml(path.read_text(), str(path)) or {}, str(path)))
    layers.append(({k: v for k, v in (overrides or {}).items() if v is not None}, "options"))
    layers += [(parse_assignment(assignment), "--set") for assignment in assignments or []]
    defaults = RunSpec().as_mapping()
    settings = _layered(defaults, layers)
    if settings["dataset"] in DATASET_DEFAULTS:
        defaults = merge(defaults, DATASET_DEFAULTS[settings["dataset"]], "dataset defaults")
        settings = _layered(defaults, layers)
    spec = build_spec(settings)
    dataset_options(spec.dataset, spec.dataset_options)
    if spec.dataset == "simulator":
        source_for(spec).config()  # the preset's name and overrides
    resolve_threads(spec.threads)
    resolve_jobs(spec)
    if any(get_ranker(model).uses_trainer for model in spec.models):
        check_trainer(spec.trainer, available_cores())
    return spec if spec.name else spec.changed(name=default_name(spec))


def environment_settings() -> tuple[dict, str]:
    """``WANDB_MODE`` sets W&B's mode where the file and the command line do not (``make bench
    WANDB_MODE=disabled``): the variable W&B users already set."""
    mode = os.environ.get("WANDB_MODE")
    if mode and mode not in MODES:
        raise ValueError(f"WANDB_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return ({"wandb": {"mode": mode}} if mode else {}), "WANDB_MODE"


def resolve_jobs(spec: RunSpec) -> int:
    """How many runs go at a time (``jobs``, auto: the cores // threads); one line where the
    cores cannot hold them or the run cannot be split into processes."""
    cores, threads = available_cores(), resolve_threads(spec.threads)
    jobs = max(1, cores // threads) if spec.jobs == "auto" else spec.jobs
    if jobs == 1:
        return 1
    # Settings that cannot go together first: they are wrong on any machine.
    devices, trainer = spec.trainer.devices, spec.trainer
    several = str(devices) not in ("auto", "1") or trainer.num_nodes > 1
    if several or single_device(trainer) == "cuda":
        raise ValueError(
            "--jobs and several devices or a GPU: runs side by side are for CPU cores; on "
            "devices use --jobs 1 (each run takes them all)"
        )
    if spec.dask is not None:
        raise ValueError("--jobs and --dask: the cluster already spreads the work; use one")
    if jobs * threads > cores:
        raise ValueError(
            f"jobs: {jobs} runs at a time with {threads} thread(s) each need {jobs * threads} "
            f"cores, and this process may use {cores}; lower --jobs or --threads"
        )
    return jobs


def _layered(settings: dict, layers: list[tuple[dict, str]]) -> dict:
    for update, source in layers:
        settings = merge(settings, update, source)
    return settings


def _yaml(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{source}: not valid YAML ({first})") from None


def default_name(spec: RunSpec) -> str:
    """``simulator-<preset>``, ``retrotech``, ``logdir-<folder name>``,
    ``files-<mapping's folder>-<mapping file name>``, ``letor-<parent>-<folder name>`` (so
    ``MQ2008/Fold1`` and ``MSLR-WEB10K/Fold1``, or two ``map.yaml`` files, do not share one
    results folder), ``esci-<locale>-<version>`` or ``wands``; a judged dataset turned into a
    click log (``dataset_options.simulate_clicks``) adds ``-clicks-<click model>``."""
    if spec.dataset == "simulator":
        return f"simulator-{spec.preset}"
    clicks = spec.dataset_options.get("simulate_clicks")
    if clicks:
        model = (clicks if isinstance(clicks, dict) else {}).get("click_model", "pbm")
        others = {k: v for k, v in spec.dataset_options.items() if k != "simulate_clicks"}
        judged = default_name(spec.changed(dataset_options=others))
        return f"{judged}-clicks-{model}"
    if spec.dataset == "esci":
        options = {**DATASET_OPTIONS["esci"], **spec.dataset_options}
        return f"esci-{options['locale']}-{options['version']}"
    if spec.dataset == "logdir" and spec.data_path:
        return f"logdir-{Path(spec.data_path).name}"
    if spec.dataset == "letor" and spec.data_path:
        folder = Path(spec.data_path).resolve()
        return f"letor-{folder.parent.name}-{folder.name}"
    if spec.dataset == "files" and spec.data_path:
        mapping = Path(spec.data_path).resolve()
        return f"files-{mapping.parent.name}-{mapping.stem}"
    return spec.dataset


def merge(base: dict, update: dict, source: str, where: str = "") -> dict:
    """Deep-merge ``update`` into a copy of ``base``; a key ``base`` lacks is an error naming
    ``source`` and the key's place, except inside the open sections."""
    prefix = "".join(f"{part}: " for part in (source, where) if part)
    if not isinstance(update, dict):
        raise ValueError(f"{prefix or 'settings: '}expected a mapping of settings")
    is_open = where.split(".")[0] in OPEN_SECTIONS
    unknown = sorted(map(str, set(update) - set(base)))
    if unknown and not is_open:
        known = ", ".join(sorted(base))
        raise ValueError(f"{prefix}unknown setting(s) {', '.join(unknown)}; known: {known}")
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value, source, f"{where}.{key}" if where else key)
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


def source_for(spec: RunSpec, progress: bool = False):
    """The dataset source a specification names (simulator preset, log folder, adapter)."""
    return make_source(
        spec.dataset,
        preset=spec.preset,
        path=spec.data_path,
        overrides=spec.simulator,
        progress=progress,
        options=spec.dataset_options,
    )
