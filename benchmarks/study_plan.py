"""A study file: rows (a model with its settings and data settings) asked under columns
(conditions of the dataset, e.g. the simulator's click model), each cell a changed copy of the
bench settings.

See ``benchmarks/study.py`` for what a study runs and reports, and
``benchmarks/configs/debiasing.yaml`` for the packaged study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.ablation_plan import (
    VARIANT_NAME,
    Variant,
    describe_settings,
    read_yaml,
    variant_spec,
)
from benchmarks.config import merge
from benchmarks.spec import RunSpec

PACKAGED_STUDY = Path(__file__).parent / "configs" / "debiasing.yaml"
FILE_KEYS = ("name", "metric", "rows", "columns")
ROW_KEYS = ("model", "description", "model_config", "data")
COLUMN_KEYS = ("description", "simulator", "dataset_options")
RESERVED_NAMES = ("wandb",)


@dataclass(frozen=True)
class Row:
    name: str
    model: str
    description: str
    model_config: dict
    data: dict


@dataclass(frozen=True)
class Condition:
    """A column: changes to the dataset every row is run on."""

    name: str
    description: str
    simulator: dict
    dataset_options: dict


@dataclass(frozen=True)
class StudyPlan:
    name: str
    metric: str  # "<label>/<metric>" as in the records, e.g. true_relevance/ndcg@10
    rows: list[Row]
    columns: list[Condition]
    source: str


def load_study(path: str | Path | None = None) -> StudyPlan:
    """The rows and columns of a study file (the packaged debiasing study by default)."""
    path = Path(path) if path is not None else PACKAGED_STUDY
    if not path.is_file():
        raise ValueError(f"study file not found: {path}")
    content = read_yaml(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a mapping with {', '.join(FILE_KEYS)}")
    unknown = sorted(map(str, set(content) - set(FILE_KEYS)))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; expected {FILE_KEYS}")
    name, metric = content.get("name"), content.get("metric", "true_relevance/ndcg@10")
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise ValueError(f"{path}: 'name' must be a folder name, e.g. debiasing")
    if not isinstance(metric, str) or metric.count("/") != 1:
        raise ValueError(f"{path}: 'metric' must be <label>/<metric>, e.g. true_relevance/ndcg@10")
    parts = {}
    for key, keys in (("rows", ROW_KEYS), ("columns", COLUMN_KEYS)):
        entries = content.get(key)
        if not isinstance(entries, dict) or not entries:
            raise ValueError(f"{path}: '{key}' must map names to their settings")
        parts[key] = [
            _entry(str(n), body, keys, f"{path}: {key[:-1]} {n!r}") for n, body in entries.items()
        ]
    rows = [Row(**entry) for entry in parts["rows"]]
    columns = [Condition(**entry) for entry in parts["columns"]]
    for row in rows:
        if not isinstance(row.model, str) or not row.model:
            raise ValueError(f"{path}: row {row.name!r}: 'model' must name a registered model")
    return StudyPlan(name, metric, rows, columns, str(path))


def _entry(name: str, body, keys: tuple[str, ...], where: str) -> dict:
    if not VARIANT_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ValueError(
            f"{where}: a name is a folder name (letters, digits, '_', '-', '.'; not wandb)"
        )
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ValueError(f"{where}: expected a mapping of {', '.join(keys)}")
    unknown = sorted(map(str, set(body) - set(keys)))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; it holds {', '.join(keys)}"
        )
    settings = {key: body.get(key) or {} for key in keys if key not in ("model", "description")}
    for key, value in settings.items():
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {key} must be a mapping of settings")
    description = body.get("description") or _described(settings)
    if not isinstance(description, str):
        raise ValueError(f"{where}: description must be one line of text")
    entry = {"name": name, "description": " ".join(description.split()), **settings}
    if "model" in keys:
        entry["model"] = body.get("model")
    return entry


def _described(settings: dict) -> str:
    """An entry without a description is described by its settings."""
    extra = {k: v for k, v in settings.items() if k not in ("model_config", "data")}
    words = [describe_settings(settings)] if set(settings) & {"model_config", "data"} else []
    words += [f"{key}={json.dumps(value)}" for key, value in extra.items() if value]
    return ", ".join(w for w in words if w and w != "no changes") or "no changes"


def study_name(spec: RunSpec, plan: StudyPlan) -> str:
    return f"{spec.name}-{plan.name}"


def cell_spec(spec: RunSpec, plan: StudyPlan, column: Condition, row: Row) -> RunSpec:
    """The bench specification of one cell: the column's dataset, the row's model and
    settings; every setting checked before any data work."""
    try:
        simulator = merge(spec.simulator, column.simulator, "", "simulator")
        options = merge(spec.dataset_options, column.dataset_options, "", "dataset_options")
    except ValueError as error:
        raise ValueError(f"column {column.name!r}: {error}") from None
    conditioned = spec.changed(simulator=simulator, dataset_options=options)
    variant = Variant(row.name, row.description, row.model_config, row.data)
    try:
        changed = variant_spec(conditioned, row.model, variant)
    except ValueError as error:
        raise ValueError(f"row {row.name!r}: {str(error).split(': ', 1)[-1]}") from None
    return changed.changed(name=f"{study_name(spec, plan)}/{column.name}/{row.name}")
