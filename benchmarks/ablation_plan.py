"""An ablation file: the model, its reference variant ``full`` and the variants, each a
changed copy of the bench settings.

See ``benchmarks/ablation.py`` for what an ablation runs and reports.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.config import merge
from benchmarks.spec import RunSpec
from datamodules.search_log import DataConfig
from datamodules.settings import as_mapping, typed_settings

PACKAGED_VARIANTS = Path(__file__).parent / "configs" / "ablate.yaml"
REFERENCE = "full"
FILE_KEYS = ("model", "variants")
VARIANT_KEYS = ("description", "model_config", "data")
# Variant names become folder names beside the ablation's wandb/ folder.
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = ("wandb",)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    model_config: dict
    data: dict


@dataclass(frozen=True)
class AblationPlan:
    model: str
    variants: list[Variant]
    source: str


# ---------------------------------------------------------------------- the ablation file


def load_ablation(path: str | Path | None = None) -> AblationPlan:
    """The model and the variants of an ablation file (the packaged one by default)."""
    path = Path(path) if path is not None else PACKAGED_VARIANTS
    if not path.is_file():
        raise ValueError(f"variants file not found: {path}")
    content = read_yaml(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a mapping with 'model' and 'variants'")
    unknown = sorted(map(str, set(content) - set(FILE_KEYS)))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; expected model, variants")
    model = content.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError(f"{path}: 'model' must name a registered model, e.g. mmoe")
    variants = content.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"{path}: 'variants' must map variant names to their settings")
    plan = AblationPlan(
        model, [_variant(str(name), body, path) for name, body in variants.items()], str(path)
    )
    _check_reference(plan)
    return plan


def read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{path}: not valid YAML ({first})") from None


def _variant(name: str, body, path: Path) -> Variant:
    where = f"{path}: variant {name!r}"
    if not VARIANT_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ValueError(
            f"{where}: a variant name is a folder name (letters, digits, '_', '-', '.'; "
            f"not {', '.join(RESERVED_NAMES)})"
        )
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ValueError(f"{where}: expected a mapping of {', '.join(VARIANT_KEYS)}")
    unknown = sorted(map(str, set(body) - set(VARIANT_KEYS)))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a variant holds "
            f"{', '.join(VARIANT_KEYS)}"
        )
    for key in ("model_config", "data"):
        if not isinstance(body.get(key) or {}, dict):
            raise ValueError(f"{where}: {key} must be a mapping of settings")
    description = body.get("description") or (
        "the reference: the model with the bench settings"
        if name == REFERENCE
        else describe_settings(body)
    )
    if not isinstance(description, str):
        raise ValueError(f"{where}: description must be one line of text")
    return Variant(
        name,
        " ".join(description.split()),
        dict(body.get("model_config") or {}),
        dict(body.get("data") or {}),
    )


def describe_settings(body: dict) -> str:
    """A variant without a description is described by its settings."""
    settings = [
        f"model_config.{key}={json.dumps(value)}"
        for key, value in (body.get("model_config") or {}).items()
    ]
    settings += [f"data.{key}={json.dumps(value)}" for key, value in _leaves(body.get("data"))]
    return ", ".join(settings) or "no changes"


def _leaves(settings: dict | None, prefix: str = ""):
    for key, value in (settings or {}).items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _check_reference(plan: AblationPlan) -> None:
    first = plan.variants[0]
    if first.name != REFERENCE or first.model_config or first.data:
        raise ValueError(
            f"{plan.source}: the first variant must be the reference {REFERENCE!r} with no "
            f"model_config or data (found {first.name!r})"
        )


def select_variants(variants: list[Variant], names: list[str] | None) -> list[Variant]:
    """The named variants in file order, the reference always among them."""
    if not names:
        return list(variants)
    known = [v.name for v in variants]
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; variants: {', '.join(known)}")
    wanted = {REFERENCE, *names}
    return [v for v in variants if v.name in wanted]


# ---------------------------------------------------------------------- per-variant settings


def ablation_name(spec: RunSpec) -> str:
    return f"{spec.name}-ablation"


def variant_spec(spec: RunSpec, model: str, variant: Variant) -> RunSpec:
    """The bench specification of one variant, a changed copy: ``model`` alone, with the
    variant's settings."""
    bench_settings = spec.model_config.get(model) or {}
    # Model settings replace the bench's of the same name whole: `task_weights:
    # {relevance: 1.0}` means relevance alone, not relevance on top of the bench's weights.
    model_config = {**spec.model_config, model: {**bench_settings, **variant.model_config}}
    try:
        data = merge(as_mapping(spec.data), variant.data, "", "data")
        changed = spec.changed(
            name=f"{ablation_name(spec)}/{variant.name}",
            models=(model,),
            model_config=model_config,
            data=typed_settings(DataConfig, data, "data"),  # every data setting checked
        )
        changed.ranker_settings(model)  # and the model's, before any work
    except ValueError as error:
        raise ValueError(f"variant {variant.name!r}: {error}") from None
    return changed


def group_by_data(specs: dict[str, RunSpec]) -> list[list[str]]:
    """Variant names grouped by identical data settings, in order of first appearance."""
    # Variants change data settings only; the log itself (dataset, preset) is the bench's.
    groups: list[tuple[DataConfig, list[str]]] = []
    for name, spec in specs.items():
        for known, names in groups:
            if known == spec.data:
                names.append(name)
                break
        else:
            groups.append((spec.data, [name]))
    return [names for _, names in groups]
