"""The ablation's table: one row per variant, its difference from ``full`` on the headline
NDCG and a paired test against ``full``; the summary files and the provenance they record."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.ablation_plan import REFERENCE, Variant, ablation_name
from benchmarks.plots import plot_ablation
from benchmarks.records import RunStore
from benchmarks.report import Column, ModelResult, format_cell, holm, summarise, table_columns
from benchmarks.spec import RunSpec
from benchmarks.summary import left_out_note, model_result, processors_line
from datamodules.atomic import atomic_write_text

SAME_LABELS = "same_relevance_labels"  # a provenance and table column
NOT_COMPARED = "†"


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
    writer: bool = True  # False in a multi-device run's other processes: nothing written


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
    relevance = [c for c in columns if _scored_on_relevance(c)]
    table = table.with_columns(
        [
            pl.when(pl.col(SAME_LABELS)).then(pl.col(f"{c.key}:p_raw")).alias(f"{c.key}:p_raw")
            for c in relevance
        ]
    )
    # Holm again over the variants still compared in those columns.
    table = table.with_columns(
        [holm(table[f"{c.key}:p_raw"]).alias(f"{c.key}:p") for c in relevance]
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
    spec: RunSpec, headline: Column, reference: PreparedData, any_other_labels: bool
) -> str:
    alpha = spec.metrics.alpha
    seeds = ", ".join(map(str, spec.seeds))
    text = (
        f"Mean ± std over seeds {seeds} on the test split ({reference.test_requests} "
        f"requests), the same split for every variant. Reference variant: `{REFERENCE}`. "
        f"Δ: the variant's mean {headline.title} minus `{REFERENCE}`'s. "
        f"*: differs from `{REFERENCE}` by a paired two-sided Wilcoxon signed-rank test over "
        f"test queries on per-query values averaged over seeds, Holm-Bonferroni-corrected "
        f"over the variants tested in each column (p < {alpha}); bold: best variant per "
        f"column."
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


def report(
    spec: RunSpec,
    model: str,
    variants: list[Variant],
    specs: dict[str, RunSpec],
    prepared: dict[str, PreparedData],
    folder: Path,
    command: str,
    ran: list[str],
    skipped: list[str],
) -> AblationOutcome:
    reference = prepared[REFERENCE]
    results = [
        replace(model_result(RunStore(folder / v.name), model, list(spec.seeds)), name=v.name)
        for v in variants
    ]
    columns = table_columns(list(reference.labels), spec.metrics.ks)
    headline = headline_column(columns)
    same_labels = {
        v.name: prepared[v.name].relevance_digest == reference.relevance_digest for v in variants
    }
    descriptions = {v.name: v.description for v in variants}
    alpha = spec.metrics.alpha
    table = ablation_table(results, columns, headline, same_labels, descriptions, alpha)
    markdown = ablation_markdown(table, columns, headline, alpha)
    footnote = _footnote(spec, headline, reference, not all(same_labels.values()))
    left_out = left_out_note(RunStore(folder / REFERENCE), specs[REFERENCE])
    if left_out:
        left_out += f" Counted in `{REFERENCE}`'s runs."
    processors = processors_line(cpu for result in results for cpu in result.processors)
    text = "\n\n".join(
        [
            f"# {ablation_name(spec)}: ablation of {model}",
            f"Reproduce with: `{command}`",
            markdown,
            " ".join(filter(None, [footnote, left_out])),
            f"Split {reference.split_hash} (every variant); dataset fingerprint of "
            f"`{REFERENCE}` {reference.fingerprint}.",
            *([processors] if processors else []),
            "Variants:\n\n" + "\n".join(f"- `{v.name}`: {v.description}" for v in variants),
        ]
    )
    atomic_write_text(folder / "summary.md", text + "\n")
    atomic_write_text(folder / "summary.csv", table.write_csv())
    atomic_write_text(
        folder / "ablation.json",
        json.dumps(_provenance(model, variants, prepared, command), indent=2, default=str),
    )
    plot_ablation(table, headline, folder / "ndcg.png", title=f"{ablation_name(spec)}: {model}")
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
