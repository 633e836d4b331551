"""Ablation study of one model: which of its parts, and of its labels, carry its quality.

An ablation file (``benchmarks/configs/ablate.yaml`` by default) names the model and an
ordered mapping of variants. The first variant, ``full``, is the reference: the model with
the bench settings. Every other variant changes some of the model's settings
(``model_config``, replacing the bench config's settings of the same name) and/or data
settings (``data``, merged over the bench config's ``data`` section), and says what it
changes in a ``description``. Everything else (dataset, preset, seeds, metrics, output, W&B)
comes from the ordinary bench config.

Each variant is a one-model benchmark whose run records go to
``<output>/<name>-ablation/<variant>/``; a run whose record matches is skipped, as in
``rankbench bench``, so an interrupted ablation resumes. Variants with the same data settings
share one prepared ``SearchLogDataModule`` (labelling and featurising are the costly part),
and every variant must have the reference's test split, so that the table compares variants
query by query: one row per variant, mean ± std over seeds, the difference from ``full`` on
the headline NDCG, and a paired Wilcoxon test of every variant against ``full``.

A variant that changes how the ``relevance`` labels are made (behavioural targets, labels
without debiasing or similarity) is scored against other test labels than ``full``'s on the
``rel`` columns; those cells are shown, marked ``†``, and neither tested nor ranked. The
true-relevance and behaviour (MRR) columns use the same test labels for every variant.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from benchmarks.config import data_config, merge
from benchmarks.plots import plt, save_figure
from benchmarks.records import RunStore
from benchmarks.report import Column, ModelResult, format_cell, summarise, table_columns
from benchmarks.runner import left_out_note, model_result, prepare_datamodule, run_models
from benchmarks.wandb_logging import WandbLogger
from datamodules import SearchLogDataModule
from datamodules.atomic import atomic_write_text
from models import get_ranker

PACKAGED_VARIANTS = Path(__file__).parent / "configs" / "ablate.yaml"
REFERENCE = "full"
FILE_KEYS = ("model", "variants")
VARIANT_KEYS = ("description", "model_config", "data")
# Variant names become folder names beside the ablation's wandb/ folder.
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = ("wandb",)
SAME_LABELS = "same_relevance_labels"
NOT_COMPARED = "†"


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


@dataclass(frozen=True)
class PreparedData:
    """What the report needs to know about the data one or more variants ran on."""

    dataset: dict
    split_hash: str
    fingerprint: str
    relevance_digest: str  # the test split's relevance labels
    test_requests: int
    labels: tuple[str, ...]


@dataclass
class AblationOutcome:
    folder: Path
    table: pl.DataFrame
    markdown: str
    ran: list[str]  # "<variant>/<run id>"
    skipped: list[str]


# ---------------------------------------------------------------------- the ablation file


def load_ablation(path: str | Path | None = None) -> AblationPlan:
    """The model and the variants of an ablation file (the packaged one by default)."""
    path = Path(path) if path is not None else PACKAGED_VARIANTS
    if not path.is_file():
        raise ValueError(f"variants file not found: {path}")
    content = _read_yaml(path)
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


def _read_yaml(path: Path):
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
        "the reference: the model with the bench settings" if name == REFERENCE else _describe(body)
    )
    if not isinstance(description, str):
        raise ValueError(f"{where}: description must be one line of text")
    return Variant(
        name,
        " ".join(description.split()),
        dict(body.get("model_config") or {}),
        dict(body.get("data") or {}),
    )


def _describe(body: dict) -> str:
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


def ablation_name(config: dict) -> str:
    return f"{config['name']}-ablation"


def variant_config(config: dict, model: str, variant: Variant) -> dict:
    """The bench config of one variant: ``model`` alone, with the variant's settings."""
    bench_settings = (config.get("model_config") or {}).get(model) or {}
    variant_settings = copy.deepcopy(config)
    variant_settings["name"] = f"{ablation_name(config)}/{variant.name}"
    variant_settings["models"] = [model]
    # Model settings replace the bench's of the same name whole: `task_weights:
    # {relevance: 1.0}` means relevance alone, not relevance on top of the bench's weights.
    variant_settings["model_config"] = {
        **(config.get("model_config") or {}),
        model: {**bench_settings, **variant.model_config},
    }
    try:
        variant_settings["data"] = merge(config["data"], variant.data, "data")
        data_config(variant_settings)  # checks every data setting before any work
        get_ranker(model)(variant_settings["model_config"][model])  # and the model's
    except ValueError as error:
        raise ValueError(f"variant {variant.name!r}: {error}") from None
    return variant_settings


def group_by_data(configs: dict[str, dict]) -> list[list[str]]:
    """Variant names grouped by identical data settings, in order of first appearance."""
    # Variants change data settings only; the log itself (dataset, preset) is the bench's.
    groups: list[tuple[object, list[str]]] = []
    for name, config in configs.items():
        settings = data_config(config)
        for known, names in groups:
            if known == settings:
                names.append(name)
                break
        else:
            groups.append((settings, [name]))
    return [names for _, names in groups]


# ---------------------------------------------------------------------- running


def run_ablation(
    config: dict,
    command: str,
    variants_file: str | Path | None = None,
    model: str | None = None,
    variants: list[str] | None = None,
    progress: bool = True,
    echo=print,
    rerun: bool = False,
) -> AblationOutcome:
    """Train and evaluate every variant x seed of an ablation, then write its table.

    ``model`` replaces the file's model, ``variants`` selects some of the file's variants
    (``full`` is always run), ``rerun`` retrains even where a matching record exists.
    """
    plan = load_ablation(variants_file)
    model = model or plan.model
    get_ranker(model)  # fail fast on a misspelt model name, before any data work
    selected = select_variants(plan.variants, variants)
    configs = {v.name: variant_config(config, model, v) for v in selected}
    folder = Path(config["output"]) / ablation_name(config)
    wandb = WandbLogger(
        config["wandb"]["mode"], config["wandb"]["project"], ablation_name(config), folder
    )

    prepared: dict[str, PreparedData] = {}
    ran, skipped = [], []
    for names in group_by_data(configs):
        echo(f"data for variant(s) {', '.join(names)}")
        datamodule = prepare_datamodule(configs[names[0]], progress, echo)
        data = describe_data(datamodule)
        check_same_split(data, prepared.get(REFERENCE), names)
        for name in names:
            prepared[name] = data
            echo(f"variant {name}")
            store = RunStore(folder / name)
            done, kept = run_models(
                datamodule, configs[name], store, _wandb_run_logger(wandb, name), progress, rerun
            )
            failed = store.failures()
            if failed:
                raise ValueError(
                    f"variant {name}: "
                    + "; ".join(
                        f"{f['run_id']} failed at {f['stage']}: {f['error']}" for f in failed
                    )
                    + " (the finished runs are kept)"
                )
            ran += [f"{name}/{run}" for run in done]
            skipped += [f"{name}/{run}" for run in kept]
        del datamodule  # free it before the next group's is built

    outcome = _report(config, model, selected, configs, prepared, folder, command, ran, skipped)
    wandb.log_summary(
        outcome.table, {"ablation": ablation_name(config), "model": model, "command": command}
    )
    return outcome


def _wandb_run_logger(wandb: WandbLogger, variant: str):
    def log_run(record: dict) -> None:
        wandb.log_run(
            record, name=f"{variant}-seed{record['seed']}", extra_config={"variant": variant}
        )

    return log_run


def describe_data(datamodule: SearchLogDataModule) -> PreparedData:
    """What the report needs from a prepared data module. Its relevance digest tells whether
    two variants score the ``rel`` columns against the same test labels."""
    test = datamodule.arrays("test")
    digest = hashlib.sha256(test.request_id.tobytes())
    if "relevance" in test.labels:
        digest.update(np.ascontiguousarray(test.labels["relevance"]).tobytes())
    return PreparedData(
        dataset=datamodule.source.describe(),
        split_hash=datamodule.split_hash,
        fingerprint=datamodule.fingerprint,
        relevance_digest=digest.hexdigest()[:16],
        test_requests=test.n_groups,
        labels=tuple(test.labels),
    )


def check_same_split(data: PreparedData, reference: PreparedData | None, names: list[str]) -> None:
    """Variants are compared query by query: every one must have the reference's test split."""
    if reference is not None and data.split_hash != reference.split_hash:
        raise ValueError(
            f"variant(s) {', '.join(names)}: split {data.split_hash} differs from "
            f"{REFERENCE!r}'s {reference.split_hash}; variants must share the test split, so "
            f"leave data.split out of them"
        )


# ---------------------------------------------------------------------- the table


def headline_column(columns: list[Column]) -> Column:
    """NDCG@10 (or the deepest k) of true relevance, or of ``relevance`` without truth."""
    for label in ("true_relevance", "relevance"):
        ndcg = [c for c in columns if c.key.startswith(f"{label}/ndcg@")]
        if ndcg:
            at_10 = [c for c in ndcg if c.key.endswith("@10")]
            return (at_10 or [max(ndcg, key=lambda c: int(c.key.split("@")[1]))])[0]
    raise ValueError("the test split has no graded label to rank the variants by")


def _scored_on_relevance(column: Column) -> bool:
    return column.key.startswith("relevance/")


def ablation_table(
    results: list[ModelResult],
    columns: list[Column],
    headline: Column,
    same_labels: dict[str, bool],
    descriptions: dict[str, str],
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per variant: mean, std and p-value against ``full`` per column, and the
    difference from ``full`` on the headline column.

    ``same_labels[name]`` says whether the variant's test ``relevance`` labels are
    ``full``'s; where they are not, its ``relevance`` columns get no p-value (nor a
    difference, when the headline is on ``relevance``)."""
    table = summarise(results, columns, alpha, against=REFERENCE).rename({"model": "variant"})
    table = table.drop("reference").with_columns(
        pl.Series("description", [descriptions[n] for n in table["variant"]]),
        pl.Series(SAME_LABELS, [same_labels[n] for n in table["variant"]]),
    )
    table = table.with_columns(
        [
            pl.when(pl.col(SAME_LABELS)).then(pl.col(f"{c.key}:p")).alias(f"{c.key}:p")
            for c in columns
            if _scored_on_relevance(c)
        ]
    )
    reference_mean = table.filter(pl.col("variant") == REFERENCE)[f"{headline.key}:mean"].item()
    difference = pl.col(f"{headline.key}:mean") - reference_mean
    if _scored_on_relevance(headline):
        difference = pl.when(pl.col(SAME_LABELS)).then(difference)
    table = table.with_columns(difference.alias(f"{headline.key}:diff_vs_{REFERENCE}"))
    first = ["variant", "description", "seeds", SAME_LABELS, f"{headline.key}:diff_vs_{REFERENCE}"]
    return table.select(first + [c for c in table.columns if c not in first])


def _compared(row: dict, column: Column) -> bool:
    return row[SAME_LABELS] or not _scored_on_relevance(column)


def ablation_markdown(
    table: pl.DataFrame, columns: list[Column], headline: Column, alpha: float = 0.05
) -> str:
    """The ablation table: ``*`` against ``full``, bold best, ``†`` where not compared."""
    headers = ["variant", f"Δ {headline.title}", *[c.title for c in columns], "fit s", "peak MiB"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    rows = list(table.iter_rows(named=True))
    best = {c.key: _best_compared(rows, c) for c in columns}
    for row in rows:
        cells = [row["variant"], _difference_cell(row, headline)]
        for column in columns:
            if _compared(row, column):
                cells.append(
                    format_cell({**row, "reference": False}, column.key, best[column.key], alpha)
                )
            else:
                cell = format_cell({**row, "reference": False}, column.key, None, alpha)
                cells.append(f"{cell} {NOT_COMPARED}")
        cells.append(f"{row['fit_seconds:mean']:.1f}" if row["fit_seconds:mean"] else "")
        cells.append(f"{row['peak_mb:max']:.0f}" if row["peak_mb:max"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_compared(rows: list[dict], column: Column) -> float | None:
    means = [row[f"{column.key}:mean"] for row in rows if _compared(row, column)]
    means = [m for m in means if m is not None and not np.isnan(m)]
    return max(means) if means else None


def _difference_cell(row: dict, headline: Column) -> str:
    if row["variant"] == REFERENCE:
        return "ref"
    difference = row[f"{headline.key}:diff_vs_{REFERENCE}"]
    if difference is None or np.isnan(difference):
        return f"– {NOT_COMPARED}" if not _compared(row, headline) else "–"
    return f"{difference:+.4f}"


def _footnote(
    config: dict, headline: Column, reference: PreparedData, any_other_labels: bool
) -> str:
    alpha = config["metrics"]["alpha"]
    seeds = ", ".join(map(str, config["seeds"]))
    text = (
        f"Mean ± std over seeds {seeds} on the test split ({reference.test_requests} "
        f"requests), the same split for every variant. Reference variant: `{REFERENCE}`. "
        f"Δ: the variant's mean {headline.title} minus `{REFERENCE}`'s. "
        f"*: differs from `{REFERENCE}` by a paired two-sided Wilcoxon signed-rank test over "
        f"test queries on per-query values averaged over seeds (p < {alpha}, no correction "
        f"for multiple comparisons); bold: best variant per column."
    )
    if any_other_labels:
        text += (
            f" {NOT_COMPARED}: the variant's test `relevance` labels differ from "
            f"`{REFERENCE}`'s (it makes them differently), so its rel columns measure "
            f"agreement with other labels: shown, but neither tested against `{REFERENCE}` nor "
            f"bolded. The true-relevance and behaviour (MRR) columns use the same test labels "
            f"for every variant and are compared for all."
        )
    return text


# ---------------------------------------------------------------------- writing results


def _report(
    config: dict,
    model: str,
    variants: list[Variant],
    configs: dict[str, dict],
    prepared: dict[str, PreparedData],
    folder: Path,
    command: str,
    ran: list[str],
    skipped: list[str],
) -> AblationOutcome:
    reference = prepared[REFERENCE]
    results = [
        replace(model_result(RunStore(folder / v.name), model, config["seeds"]), name=v.name)
        for v in variants
    ]
    columns = table_columns(list(reference.labels), tuple(config["metrics"]["ks"]))
    headline = headline_column(columns)
    same_labels = {
        v.name: prepared[v.name].relevance_digest == reference.relevance_digest for v in variants
    }
    descriptions = {v.name: v.description for v in variants}
    alpha = config["metrics"]["alpha"]
    table = ablation_table(results, columns, headline, same_labels, descriptions, alpha)
    markdown = ablation_markdown(table, columns, headline, alpha)
    footnote = _footnote(config, headline, reference, not all(same_labels.values()))
    left_out = left_out_note(RunStore(folder / REFERENCE), configs[REFERENCE])
    if left_out:
        left_out += f" Counted in `{REFERENCE}`'s runs."
    text = "\n\n".join(
        [
            f"# {ablation_name(config)}: ablation of {model}",
            f"Reproduce with: `{command}`",
            markdown,
            " ".join(filter(None, [footnote, left_out])),
            f"Split {reference.split_hash} (every variant); dataset fingerprint of "
            f"`{REFERENCE}` {reference.fingerprint}.",
            "Variants:\n\n" + "\n".join(f"- `{v.name}`: {v.description}" for v in variants),
        ]
    )
    atomic_write_text(folder / "summary.md", text + "\n")
    atomic_write_text(folder / "summary.csv", table.write_csv())
    atomic_write_text(
        folder / "ablation.json",
        json.dumps(_provenance(model, variants, prepared, command), indent=2, default=str),
    )
    plot_ablation(table, headline, folder / "ndcg.png", title=f"{ablation_name(config)}: {model}")
    return AblationOutcome(folder, table, f"{markdown}\n\n{footnote}", ran, skipped)


def _provenance(
    model: str, variants: list[Variant], prepared: dict[str, PreparedData], command: str
) -> dict:
    reference = prepared[REFERENCE]
    return {
        "model": model,
        "command": command,
        "dataset": reference.dataset,
        "split_hash": reference.split_hash,
        "variants": [
            {
                "name": v.name,
                "description": v.description,
                "model_config": v.model_config,
                "data": v.data,
                "dataset_fingerprint": prepared[v.name].fingerprint,
                SAME_LABELS: prepared[v.name].relevance_digest == reference.relevance_digest,
            }
            for v in variants
        ],
    }


def plot_ablation(table: pl.DataFrame, headline: Column, path: Path, title: str) -> None:
    """The headline NDCG per variant (mean ± std over seeds), ``full``'s as a line.

    Points rather than bars: the axis is zoomed to the variants' range, where bars starting
    above zero would exaggerate the differences."""
    variants = table["variant"].to_list()
    means = table[f"{headline.key}:mean"].to_numpy()
    stds = table[f"{headline.key}:std"].fill_null(0).to_numpy()
    x = np.arange(len(variants))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(variants) + 2.5), 4.5))
    ax.errorbar(
        x, means, yerr=stds, fmt="o", capsize=4, color="tab:blue", label="mean ± std over seeds"
    )
    reference = means[variants.index(REFERENCE)]
    ax.axhline(reference, color="tab:red", linestyle="--", label=f"{REFERENCE}")
    ax.set_xticks(x, variants, rotation=25, ha="right")
    ax.set_xlim(-0.5, len(variants) - 0.5)
    ax.set_ylabel(f"{headline.title} on the test split")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)
