"""A study: several models and training signals (rows) under several conditions of the data
(columns), one headline metric, every cell a small benchmark.

The packaged study (``benchmarks/configs/debiasing.yaml``) asks how a search team should use
its clicks: train on them raw, debias them into labels first (``labeling/``), or debias them
inside the objective (inverse propensity scoring, the dual learning algorithm, unbiased
LambdaMART), under three click models of the simulator. A study file names:

- ``rows``: a model and its settings (``model_config``, replacing the bench's of the same
  name) and data settings (``data``, merged over the bench's), as an ablation variant does;
- ``columns``: changes to the dataset every row runs on (``simulator`` overrides, or
  ``dataset_options`` of a path dataset);
- ``metric``: the headline (``true_relevance/ndcg@10`` by default).

Each cell's run records go to ``<output>/<name>-<study>/<column>/<row>/``; a run whose record
matches is skipped, so an interrupted study resumes. Rows with the same data settings share
one prepared dataset per column. Within a column every row has the same test split, so the
rows are compared query by query: mean ± std over seeds, a bootstrap interval over queries,
and a two-sided paired Wilcoxon test of every row against the column's best row,
Holm-Bonferroni-corrected over the model rows of that column (the reference rows a family
of their own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.ablation import check_same_split, describe_data
from benchmarks.ablation_plan import group_by_data
from benchmarks.config import source_for
from benchmarks.plots import plot_summary
from benchmarks.records import RunStore, lock_hash
from benchmarks.report import Column, ModelResult, summarise
from benchmarks.runner import prepare_datamodule, run_models
from benchmarks.spec import RunSpec
from benchmarks.study_plan import StudyPlan, cell_spec, load_study, study_name
from benchmarks.summary import model_result, processors_line, reference_results, table_command
from benchmarks.wandb_logging import WandbRuns
from datamodules.atomic import atomic_write_text
from datamodules.threads import resolve_threads
from models import get_ranker
from models.devices import is_first_process

SHOWN_REFERENCES = ("ref: logged order", "ref: random")


@dataclass
class StudyOutcome:
    folder: Path
    table: pl.DataFrame  # one row per (row, column)
    markdown: str
    ran: list[str]
    skipped: list[str]
    writer: bool = True


def run_study(
    spec: RunSpec,
    command: str,
    study_file: str | Path | None = None,
    rows: list[str] | None = None,
    columns: list[str] | None = None,
    progress: bool = True,
    echo=print,
    rerun: bool = False,
) -> StudyOutcome:
    """Train and evaluate every row x column x seed of a study, then write its table.
    ``rows`` and ``columns`` select some of the file's (all by default)."""
    plan = _selected(load_study(study_file), rows, columns)
    specs = {(c.name, r.name): cell_spec(spec, plan, c, r) for c in plan.columns for r in plan.rows}
    for row in plan.rows:
        get_ranker(row.model)
    for column in plan.columns:  # a column's dataset settings, before any data work
        source = source_for(specs[(column.name, plan.rows[0].name)])
        if hasattr(source, "config"):
            source.config()
    folder = Path(spec.output) / study_name(spec, plan)
    first = is_first_process()
    progress, echo = (progress, echo) if first else (False, lambda *_: None)
    mode = spec.wandb.mode if first else "disabled"
    wandb = WandbRuns(mode, spec.wandb.project, study_name(spec, plan), folder)

    ran, skipped, cells = [], [], []
    for column in plan.columns:
        by_row = {r.name: specs[(column.name, r.name)] for r in plan.rows}
        reference, references = None, []
        for names in group_by_data(by_row):
            echo(f"{column.name}: data for row(s) {', '.join(names)}")
            datamodule = prepare_datamodule(by_row[names[0]], progress, echo)
            data = describe_data(datamodule)
            check_same_split(data, reference, names)
            if reference is None:
                reference = data
                references = [
                    r
                    for r in reference_results(datamodule, by_row[names[0]])
                    if r.name in SHOWN_REFERENCES
                ]
            for name in names:
                echo(f"{column.name}: row {name}")
                store = RunStore(folder / column.name / name, writer=first)
                done, kept = run_models(
                    datamodule, by_row[name], store, wandb, progress, rerun, f"{column.name}-{name}"
                )
                _raise_failures(store, f"{column.name}/{name}")
                ran += [f"{column.name}/{name}/{run}" for run in done]
                skipped += [f"{column.name}/{name}/{run}" for run in kept]
            del datamodule
        cells.append((column, reference, references))

    if not first:
        return StudyOutcome(folder, pl.DataFrame(), "", ran, skipped, writer=False)
    return _report(spec, plan, folder, cells, command, ran, skipped)


def _selected(plan: StudyPlan, rows: list[str] | None, columns: list[str] | None) -> StudyPlan:
    def pick(entries, names, what):
        if not names:
            return entries
        known = [e.name for e in entries]
        unknown = [n for n in dict.fromkeys(names) if n not in known]
        if unknown:
            raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; {what}s: {', '.join(known)}")
        return [e for e in entries if e.name in names]

    return replace(
        plan, rows=pick(plan.rows, rows, "row"), columns=pick(plan.columns, columns, "column")
    )


def _raise_failures(store: RunStore, where: str) -> None:
    failed = store.failures()
    if failed:
        raise ValueError(
            f"{where}: "
            + "; ".join(f"{f['run_id']} failed at {f['stage']}: {f['error']}" for f in failed)
            + " (the finished runs are kept)"
        )


# ---------------------------------------------------------------------- the report


def cell_results(plan: StudyPlan, folder: Path, seeds: list[int], cells) -> list[list[ModelResult]]:
    """Each column's rows, as their records hold them (one list per column of ``cells``)."""
    return [
        [
            replace(
                model_result(RunStore(folder / column.name / r.name), r.model, seeds), name=r.name
            )
            for r in plan.rows
        ]
        for column, _, _ in cells
    ]


def study_table(plan: StudyPlan, results_by_column: list[list[ModelResult]], cells, alpha: float):
    """One row per (row, column) with the headline's mean, std, interval and corrected p-value
    against the column's best row; the references of each column as rows too."""
    headline = Column(plan.metric, plan.metric)
    parts = []
    for (column, _reference, references), results in zip(cells, results_by_column, strict=True):
        # The references are shown for scale, outside the family of tests.
        trained = summarise(results, [headline], alpha)
        shown = summarise(references, [headline], alpha, against=references[0].name)
        p_values = [f"{plan.metric}:p", f"{plan.metric}:p_raw"]
        shown = shown.with_columns(pl.lit(None, dtype=pl.Float64).alias(p) for p in p_values)
        table = pl.concat([trained, shown], how="diagonal_relaxed")
        parts.append(table.with_columns(pl.lit(column.name).alias("column")))
    return pl.concat(parts, how="diagonal_relaxed").select(
        "column",
        pl.col("model").alias("row"),
        "reference",
        "seeds",
        *(pl.col(f"{plan.metric}:{s}").alias(s) for s in ("mean", "std", "ci_low", "ci_high")),
        pl.col(f"{plan.metric}:p").alias("p"),
        pl.col(f"{plan.metric}:p_raw").alias("p_raw"),
        pl.col("fit_seconds:mean").alias("fit_seconds"),
    )


def study_markdown(plan: StudyPlan, table: pl.DataFrame, alpha: float) -> str:
    """Rows x columns, ``mean ± std`` (± only with several seeds), the best row of each column
    in bold, ``*`` where a row differs from it (corrected p < alpha)."""
    columns = [c.name for c in plan.columns]
    names = [r.name for r in plan.rows] + [
        n for n in table.filter(pl.col("reference"))["row"].unique(maintain_order=True)
    ]
    models = {r.name: r.model for r in plan.rows}
    lines = [
        "| row | model | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name in names:
        cells = []
        for column in columns:
            found = table.filter((pl.col("row") == name) & (pl.col("column") == column))
            cells.append(
                _cell(found.row(0, named=True), table, column, alpha) if found.height else ""
            )
        lines.append(f"| {name} | {models.get(name, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: dict, table: pl.DataFrame, column: str, alpha: float) -> str:
    text = f"{row['mean']:.4f}"
    if row["seeds"] and row["seeds"] > 1:
        text += f" ± {row['std']:.4f}"
    if row["reference"]:
        return text
    trained = table.filter((pl.col("column") == column) & ~pl.col("reference"))
    if np.isclose(row["mean"], trained["mean"].max()):
        text = f"**{text}**"
    if row["p"] is not None and row["p"] < alpha:
        text += "*"
    return text


def _report(spec, plan, folder, cells, command, ran, skipped) -> StudyOutcome:
    seeds = list(spec.seeds)
    alpha = spec.metrics.alpha
    results_by_column = cell_results(plan, folder, seeds, cells)
    table = study_table(plan, results_by_column, cells, alpha)
    markdown = study_markdown(plan, table, alpha)
    models = list(dict.fromkeys(r.model for r in plan.rows))
    threads = resolve_threads(spec.threads)
    by_threads = any(not get_ranker(m).thread_independent for m in models)
    # The study's rows name the models: the command keeps its own rows, not a --models list.
    shown_command = table_command(command, [], seeds, threads if by_threads else None)
    splits = ", ".join(
        f"{c.name} {ref.split_hash} ({ref.test_requests} requests)" for c, ref, _ in cells
    )
    processors = processors_line(
        cpu for results in results_by_column for result in results for cpu in result.processors
    )
    text = "\n\n".join(
        [
            f"# {study_name(spec, plan)}: `{plan.metric}`",
            f"Reproduce with: `{shown_command}`",
            markdown,
            f"`{plan.metric}` on the test split, mean ± std over seeds "
            f"{', '.join(map(str, seeds))}; "
            f"bold: best row per column; *: differs from it by a two-sided paired Wilcoxon "
            f"signed-rank test over test requests on per-query values averaged over seeds, "
            f"Holm-Bonferroni-corrected over the model rows of the column (`ref:` rows a "
            f"family of their own; p < {alpha}); 95% "
            f"bootstrap intervals over queries in summary.csv and ndcg.png. `ref:` rows are "
            f"model-free references.",
            f"Test splits: {splits}; lock {lock_hash()}, {threads} thread(s).",
            *([processors] if processors else []),
            "Rows:\n\n"
            + "\n".join(f"- `{r.name}` ({r.model}): {r.description}" for r in plan.rows),
            "Columns:\n\n" + "\n".join(f"- `{c.name}`: {c.description}" for c in plan.columns),
        ]
    )
    atomic_write_text(folder / "summary.md", text + "\n")
    atomic_write_text(folder / "summary.csv", table.write_csv())
    atomic_write_text(
        folder / "study.json",
        json.dumps(
            {
                "study": plan.name,
                "source": plan.source,
                "command": command,
                "metric": plan.metric,
                "columns": [
                    {
                        "name": c.name,
                        "description": c.description,
                        "simulator": c.simulator,
                        "dataset_options": c.dataset_options,
                        "dataset": ref.dataset,
                        "split_hash": ref.split_hash,
                        "fingerprint": ref.fingerprint,
                    }
                    for c, ref, _ in cells
                ],
                "rows": [r.__dict__ for r in plan.rows],
            },
            indent=2,
            default=str,
        ),
    )
    plot_summary(
        _by_column(plan, table),
        [Column(c.name, f"{plan.metric} | {c.name}") for c in plan.columns],
        folder / "ndcg.png",
        title=study_name(spec, plan),
    )
    return StudyOutcome(folder, table, markdown, ran, skipped)


def _by_column(plan: StudyPlan, table: pl.DataFrame) -> pl.DataFrame:
    """The long table as one row per study row and ``<column>:mean/ci_low/ci_high`` per
    column, the shape ``plot_summary`` draws one panel per column from."""
    wide = table.select("row", "reference").unique(maintain_order=True)
    for column in plan.columns:
        part = table.filter(pl.col("column") == column.name).select(
            "row", *(pl.col(s).alias(f"{column.name}:{s}") for s in ("mean", "ci_low", "ci_high"))
        )
        wide = wide.join(part, on="row", how="left", maintain_order="left")
    return wide.rename({"row": "model"})
