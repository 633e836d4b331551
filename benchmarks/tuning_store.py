"""Where ``rankbench tune`` keeps its studies and their best settings, what a study's
identity is, and how ``rankbench bench --tuned`` reads them back.

A tuning folder is ``<output>/<name>-tuning/``: per model, its Optuna study in
``<model>.sqlite3`` and its best trial in ``<model>.best.yaml`` (the settings, their
validation NDCG@10, the trial, the trials done and their wall time). A study carries the
identity of what made it (data, split, the model's code and search space, the base settings,
the sampler and its seed, the lock and, where the model's numbers depend on it, the thread
count) as user attributes; a study whose identity differs from the run's is refused.

``--tuned DIR`` runs each model a second time with its tuned settings on top of the run's
own: records ``<model>+tuned-seed<seed>``, a row ``<model> (tuned)`` beside the model's own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.records import code_hash, config_hash, lock_hash, source_closure
from benchmarks.reuse import run_settings
from benchmarks.search_spaces import search_space
from benchmarks.spec import RunSpec
from datamodules.atomic import atomic_write_text
from models import get_ranker

TUNED = "+tuned"  # in run ids: xgboost+tuned-seed0
TUNED_ROW = " (tuned)"  # in tables: xgboost (tuned)
# What the objective scores: the one choice a study makes besides its settings.
OBJECTIVE = "validation NDCG@10 of relevance"
# Identity attribute of a study -> the word its refusal uses.
IDENTITY = {
    "dataset_fingerprint": "data",
    "split_hash": "split",
    "code_hash": "model code",
    "space_hash": "search space",
    "config_hash": "base settings",
    "tune": "sampler or seed",
    "objective": "objective",
    "lock": "lock",
    "threads": "threads",
}


def tuning_name(spec: RunSpec) -> str:
    return f"{spec.name}-tuning"


def tuning_folder(spec: RunSpec) -> Path:
    return Path(spec.output) / tuning_name(spec)


def study_path(folder: Path, model: str) -> Path:
    return Path(folder) / f"{model}.sqlite3"


def best_path(folder: Path, model: str) -> Path:
    return Path(folder) / f"{model}.best.yaml"


def tuned_spec(spec: RunSpec, model: str, settings: dict) -> RunSpec:
    """``spec`` with ``settings`` over ``model``'s own (a trial's, or the best ones)."""
    model_config = {**spec.model_config, model: {**spec.model_config.get(model, {}), **settings}}
    return spec.changed(model_config=model_config)


def row_name(model: str, tuned: bool) -> str:
    return f"{model}{TUNED_ROW}" if tuned else model


def run_name(model: str, tuned: bool) -> str:
    return f"{model}{TUNED}" if tuned else model


# ---------------------------------------------------------------------- a study's identity


def space_hash(model: str) -> str:
    """A hash of ``model``'s search-space file and the rankbench files it imports."""
    module = search_space(model)
    digest = hashlib.sha256()
    for path in source_closure([Path(module.__file__)]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def study_identity(spec: RunSpec, datamodule, model: str, threads: int) -> dict:
    """What a study's trials depend on; the budget (trials, timeout) is not part of it, so a
    study resumes under a larger one."""
    ranker = get_ranker(model)
    return {
        "dataset_fingerprint": datamodule.fingerprint,
        "split_hash": datamodule.split_hash,
        "code_hash": code_hash(ranker),
        "space_hash": space_hash(model),
        "config_hash": config_hash(run_settings(spec, datamodule, model)),
        "tune": f"{spec.tune.sampler}, seed {spec.tune.seed}",
        "objective": OBJECTIVE,
        "lock": lock_hash(),
        "threads": None if ranker.thread_independent else threads,
    }


def identity_differences(stored: dict, now: dict) -> list[str]:
    """What differs between a study's stored identity and the run's, in words."""
    differences = []
    for key, word in IDENTITY.items():
        if stored.get(key) != now.get(key):
            differences.append(f"{word} ({_short(stored.get(key))}, now {_short(now.get(key))})")
    return differences


def _short(value) -> str:
    return "none" if value is None else str(value)[:16]


# ---------------------------------------------------------------------- best settings


@dataclass(frozen=True)
class Tuned:
    """A model's tuned settings as ``--tuned`` reads them, and where they came from."""

    model: str
    settings: dict
    folder: str  # as --tuned gave it: what a table's command repeats
    content: dict  # the whole best file

    def provenance(self) -> dict:
        """What a tuned run's record keeps: the settings, where they came from and their
        study's result."""
        keep = ("value", "trial", "trials_done", "stopped_by", "budget", "tuned_on")
        return {
            "settings": self.settings,
            "folder": self.folder,
            **{key: self.content.get(key) for key in keep},
        }


def budget_of(tune) -> dict:
    """The budget a study ran under, as its best file and the tuned runs' records keep it."""
    return {
        "trials": tune.trials,
        "timeout_s": tune.timeout_s,
        "sampler": tune.sampler,
        "seed": tune.seed,
    }


def write_best(folder: Path, model: str, content: dict) -> Path:
    path = best_path(folder, model)
    header = f"# rankbench tune: the best trial of {study_path(folder, model).name}\n"
    atomic_write_text(path, header + yaml.safe_dump(content, sort_keys=False))
    return path


def load_tuned(folder: str | Path, spec: RunSpec) -> dict[str, Tuned]:
    """The tuned settings of every model of ``spec`` in ``folder``; one line otherwise
    (before any data work)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"--tuned {folder}: no such folder; give the folder `rankbench tune` wrote, "
            f"e.g. {tuning_folder(spec)}"
        )
    tuned = {}
    for model in spec.models:
        path = best_path(folder, model)
        if not path.is_file():
            raise ValueError(
                f"--tuned {folder}: no tuned settings for {model} ({path.name} missing); "
                f"tune it first: rankbench tune --models {model} ..."
            )
        tuned[model] = _read_best(path, model, spec, str(folder))
    return tuned


def _read_best(path: Path, model: str, spec: RunSpec, folder: str) -> Tuned:
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(content, dict) or not isinstance(content.get("settings"), dict):
        raise ValueError(f"{path}: not a tuned-settings file (expected model and settings)")
    if content.get("model") != model:
        raise ValueError(f"{path}: holds settings for {content.get('model')!r}, not {model!r}")
    try:  # the settings checked against the model's own, as any model_config
        tuned_spec(spec, model, content["settings"]).ranker_settings(model)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return Tuned(model, content["settings"], folder, content)
