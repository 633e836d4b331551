"""A benchmark folder's summary: built from every valid record in its ``runs/`` (not only the
last command's), with stale and failed runs shown for what they are, and the reference rows.
A model run with tuned settings (``--tuned``) has its own row, ``<model> (tuned)``, after
the model's own.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.evaluation import evaluate_scores, reference_scores
from benchmarks.label_leak import label_leak, leak_line
from benchmarks.metric_conventions import CONVENTIONS
from benchmarks.plots import plot_summary
from benchmarks.records import RunStore, lock_hash
from benchmarks.report import ModelResult, summarise, table_columns, to_markdown
from benchmarks.reuse import stale_reasons
from benchmarks.spec import DEFAULT_MODELS, RunSpec
from benchmarks.tuning_store import OBJECTIVE, TUNED_ROW, row_name, tuned_spec
from datamodules.atomic import atomic_write_text
from datamodules.threads import resolve_threads
from models import get_ranker


@dataclass
class Summary:
    table: pl.DataFrame
    markdown: str  # the table and the left-out note, as printed
    stale: list[str]  # "<run id>: <reasons>" of records the table marks stale
    failed: list[str]  # "<run id> at <stage>: <error>" of runs that failed since
    valid: list[dict]  # the records the table's rows are built from


def write_summary(
    spec: RunSpec, datamodule, store: RunStore, folder: Path, command: str
) -> Summary:
    """Write ``summary.md``, ``summary.csv``, ``dataset.json`` and ``ndcg.png`` of
    ``folder`` from every record in ``store``."""
    threads = resolve_threads(spec.threads)
    valid, stale = _sort_records(store, datamodule, spec, threads)
    rows = sorted(valid, key=row_order)
    for row in rows:
        valid[row].sort(key=lambda r: r["seed"])
    seeds = {row: [r["seed"] for r in valid[row]] for row in rows}
    results = [result_of(store, row, valid[row]) for row in rows]
    uniform = len({tuple(s) for s in seeds.values()}) <= 1
    if not uniform:  # say which seeds each row averages
        for result in results:
            result.name += f" (seeds {', '.join(map(str, seeds[result.name]))})"
    results += _stale_results(store, stale)
    failures = store.failures()
    results += _failed_results(failures)
    results += reference_results(datamodule, spec)
    labels = list(datamodule.arrays("test").labels)
    columns = table_columns(labels, spec.metrics.ks)
    alpha = spec.metrics.alpha
    units = resampling_units(datamodule, spec.metrics.resample)
    table = summarise(results, columns, alpha, units=units)
    markdown = to_markdown(table, columns, alpha)
    first = valid[rows[0]][0] if rows else None
    records = [record for row in rows for record in valid[row]]
    processors = processors_line(record_processor(record) for record in records)
    left_out = left_out_from(first) if first else ""
    leak = leak_line(
        label_leak(datamodule, spec.metrics.ks, spec.metrics.gain, spec.metrics.scoring())
    )
    all_seeds = sorted({s for model_seeds in seeds.values() for s in model_seeds})
    models = list(dict.fromkeys(valid[row][0]["model"] for row in rows))
    by_threads = any(not get_ranker(m).thread_independent for m in models)
    # The folder tuned rows took their settings from, for the command that remakes them.
    tuned = next((r["tuned"]["folder"] for row in rows for r in valid[row] if r.get("tuned")), None)
    remake = table_command(command, models, all_seeds, threads if by_threads else None, tuned)
    tuned_records = [valid[row][0] for row in rows if valid[row][0].get("tuned")]
    over = f"seeds {', '.join(map(str, all_seeds))}" if uniform else "the seeds each row names"
    text = (
        "\n\n".join(
            [
                f"# {spec.name}",
                f"Reproduce with: `{remake}`",
                markdown,
                f"Mean ± std over {over} on the test split "
                f"({datamodule.arrays('test').n_groups} requests); bold: best model per column; "
                f"*: differs from the best model by a two-sided paired Wilcoxon signed-rank "
                f"test over {_unit_words(units)} on per-query values averaged over seeds, "
                f"Holm-Bonferroni-corrected over the model rows tested in each column (`ref:` "
                f"rows apart; p < {alpha}); 95% bootstrap intervals of each mean, resampling "
                f"them, are in summary.csv "
                f"(`:ci_low`, `:ci_high`) and ndcg.png. `ref:` rows are model-free "
                f"references. {left_out}" + _convention_line(spec),
                *([leak] if leak else []),
                f"Split {datamodule.split_hash}, dataset fingerprint {datamodule.fingerprint}, "
                f"lock {lock_hash()}, {threads} thread(s)." + _notes_line(datamodule),
                *([_preparation_line(first)] if first and first.get("preparation") else []),
                *([processors] if processors else []),
                *([_tuned_line(tuned_records)] if tuned_records else []),
                *([stale_table(stale)] if stale else []),
                *([failed_list(failures)] if failures else []),
            ]
        )
        + "\n"
    )
    atomic_write_text(folder / "summary.md", text)
    atomic_write_text(folder / "summary.csv", table.write_csv())
    atomic_write_text(
        folder / "dataset.json",
        json.dumps(
            {
                "dataset": datamodule.source.describe(),
                "split_hash": datamodule.split_hash,
                "fingerprint": datamodule.fingerprint,
                "spec": datamodule.spec.__dict__,
            },
            indent=2,
            default=str,
        ),
    )
    plot_summary(table, columns, folder / "ndcg.png", title=spec.name)
    stale_lines = [f"{run_id}: {', '.join(reasons)}" for run_id, _, reasons in stale]
    failed = [f"{f['run_id']} at {f['stage']}: {f['error']}" for f in failures]
    return Summary(table, markdown + "\n\n" + left_out, stale_lines, failed, records)


def _sort_records(
    store: RunStore, datamodule, spec: RunSpec, threads: int
) -> tuple[dict[str, list[dict]], list[tuple[str, dict | None, list[str]]]]:
    """Every record of the folder: valid ones by row (the model, or the model tuned), stale
    ones with their reasons."""
    valid: dict[str, list[dict]] = {}
    stale = []
    for run_id, record, problem in store.scan():
        reasons = [problem] if problem else _stale(record, datamodule, spec, threads)
        if reasons:
            stale.append((run_id, record, reasons))
        else:
            valid.setdefault(record_row(record), []).append(record)
    return valid, stale


def _stale(record: dict, datamodule, spec: RunSpec, threads: int) -> list[str]:
    """Why ``record`` is stale; a tuned run is judged with its own tuned settings over the
    spec's, as it was made."""
    tuned = record.get("tuned")
    if tuned and "model" in record:
        spec = tuned_spec(spec, record["model"], tuned.get("settings") or {})
    try:
        return stale_reasons(record, datamodule, spec, threads)
    except ValueError:  # tuned settings this model no longer has
        return ["config"]


def record_row(record: dict) -> str:
    """The table row of a record or failure record: its model, or ``<model> (tuned)``."""
    return row_name(record["model"], bool(record.get("tuned")))


def row_order(row: str) -> tuple:
    """Rows in model order, each model's tuned row after its own."""
    tuned = row.endswith(TUNED_ROW)
    return (*model_order(row.removesuffix(TUNED_ROW) if tuned else row), tuned)


def _stale_results(store: RunStore, stale) -> list[ModelResult]:
    """One row per model and reason of the stale records that can still be read: a committed
    table never shrinks; it says which rows this code, data or settings would not make."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for _, record, reasons in stale:
        if record is not None and "model" in record and not _unreadable(reasons):
            groups.setdefault((record_row(record), ", ".join(reasons)), []).append(record)
    rows = []
    for (row, why), records in sorted(groups.items(), key=lambda g: row_order(g[0][0])):
        records.sort(key=lambda r: r["seed"])
        result = result_of(store, row, records)
        seeds = ", ".join(str(r["seed"]) for r in records)
        result.name = f"{row} (stale: {why}; seeds {seeds})"
        result.stale = True
        rows.append(result)
    return rows


def _failed_results(failures: list[dict]) -> list[ModelResult]:
    """A row per model whose runs failed (and have not succeeded since): no numbers, but the
    table says the model was run."""
    seeds: dict[str, list[int]] = {}
    for failure in failures:
        seeds.setdefault(record_row(failure), []).append(failure["seed"])
    rows = []
    for row in sorted(seeds, key=row_order):
        name = f"{row} (failed; seeds {', '.join(map(str, sorted(seeds[row])))})"
        empty = pl.DataFrame({"request_id": []})
        rows.append(ModelResult(name, False, {}, empty, [], [], stale=True))
    return rows


def failed_list(failures: list[dict]) -> str:
    lines = ["Failed runs (tried again by the next command):", ""]
    lines += [f"- {f['run_id']} at {f['stage']}: {f['error']}" for f in failures]
    return "\n".join(lines)


def _unreadable(reasons: list[str]) -> bool:
    return any(r in RunStore.UNFINISHED for r in reasons)


def model_order(model: str) -> tuple[int, str]:
    """The packaged default models first, in their order; any other model after, by name."""
    packaged = DEFAULT_MODELS
    return (packaged.index(model) if model in packaged else len(packaged), model)


def table_command(
    command: str,
    models: list[str],
    seeds: list[int],
    threads: int | None,
    tuned: str | None = None,
) -> str:
    """The command that reproduces the whole table: ``command`` with its models, seeds,
    thread count and tuned-settings folder replaced by the table's (and without ``--rerun``
    or ``--quiet``)."""
    words = shlex.split(command)
    dropped = {"--models": True, "--seeds": True, "--threads": True, "--rerun": False}
    dropped |= {"--quiet": False, "--wandb": True, "--tuned": True}
    kept, skipping = [], False
    for word in words:
        if word in dropped:
            skipping = dropped[word]
            continue
        if skipping and not word.startswith("--"):
            continue
        skipping = False
        kept.append(word)
    kept += ["--models", *models] if models else []
    kept += ["--seeds", *map(str, seeds)] if seeds else []
    kept += ["--threads", str(threads)] if threads is not None else []
    kept += ["--tuned", tuned] if tuned is not None else []
    return shlex.join(kept)


def stale_table(stale: list[tuple[str, dict | None, list[str]]]) -> str:
    """Records this code, data, config, lock or thread count would not make again, one by
    one: their rows above are marked stale and never best or tested; rerunning their model
    refreshes them."""
    lines = [
        "Stale records (rows marked stale above: never best, never tested; rerun their model "
        "to refresh them):",
        "",
        "| run | why | made at |",
        "|---|---|---|",
    ]
    for run_id, record, reasons in stale:
        made = (record or {}).get("git", {}).get("commit") or ""
        lines.append(f"| {run_id} | {', '.join(reasons)} | {made[:10]} |")
    return "\n".join(lines)


def resampling_units(datamodule, resample: str) -> pl.DataFrame | None:
    """``request_id -> unit`` (the request's query text) when tests and intervals resample
    query texts: asked for, or ``auto`` with at most half as many distinct test queries as
    requests; None to resample requests."""
    if resample == "request":
        return None
    test = datamodule.arrays("test")
    fields = datamodule.spec.text_fields
    if "query" not in fields:
        return None
    first = test.offsets[:-1]
    queries = test.text_ids[first, fields.index("query")]
    if resample == "auto" and 2 * len(np.unique(queries)) > len(queries):
        return None
    return pl.DataFrame({"request_id": test.request_id[first], "unit": queries})


def _unit_words(units: pl.DataFrame | None) -> str:
    if units is None:
        return "test queries"
    return (
        f"the {units['unit'].n_unique():,} distinct test query texts (each the mean over its "
        f"requests, as queries repeat across the {units.height:,} test requests)"
    )


def _convention_line(spec: RunSpec) -> str:
    """What the metrics do differently from the suite's default convention, if anything."""
    chosen = spec.metrics.scoring()
    default = CONVENTIONS["rankbench"]
    changed = [
        f"{k} {getattr(chosen, k)}"
        for k in vars(default)
        if getattr(chosen, k) != getattr(default, k)
    ]
    if not changed:
        return ""
    return f" Metric convention {spec.metrics.convention}: {', '.join(changed)}."


def _notes_line(datamodule) -> str:
    """What the adapter dropped, what the dataset lacks and what was skipped for it."""
    if not datamodule.notes:
        return ""
    return " Dataset notes: " + "; ".join(datamodule.notes) + "."


def model_result(store: RunStore, model: str, seeds: list[int]) -> ModelResult:
    """A model's row of a summary: its seeds' means, and per-query values averaged over seeds."""
    records = [json.loads(store.record_path(f"{model}-seed{s}").read_text()) for s in seeds]
    return result_of(store, model, records)


def result_of(store: RunStore, model: str, records: list[dict]) -> ModelResult:
    """A model's row from its records (already read): means per seed, per-query values
    averaged over seeds."""
    values: dict[str, list[float]] = {}
    for record in records:
        for label, metrics in record["metrics"].items():
            for name, result in metrics.items():
                values.setdefault(f"{label}/{name}", []).append(result["mean"])
    per_query = pl.concat([store.per_query(r["run_id"]) for r in records])
    per_query = per_query.group_by("request_id").agg(pl.all().mean()).sort("request_id")
    return ModelResult(
        name=model,
        reference=False,
        values=values,
        per_query=per_query,
        fit_seconds=[r["wall_time_s"]["fit"] for r in records],
        peak_mb=[r["peak_memory_mb"] for r in records],
        processors=[record_processor(r) for r in records],
    )


def reference_results(datamodule, spec: RunSpec) -> list[ModelResult]:
    test = datamodule.arrays("test")
    references = reference_scores(test)
    if "true_relevance" in test.labels:
        references["ideal (true relevance)"] = test.labels["true_relevance"].astype(np.float64)
    results = []
    for name, scores in references.items():
        metrics, per_query = evaluate_scores(
            test, scores, spec.metrics.ks, spec.metrics.gain, spec.metrics.scoring()
        )
        values = {
            f"{label}/{m}": [r["mean"]] for label, ms in metrics.items() for m, r in ms.items()
        }
        results.append(ModelResult(f"ref: {name}", True, values, per_query, [], []))
    return results


def left_out_note(store: RunStore, spec: RunSpec) -> str:
    """How many test queries each label leaves out (no positive label), from the first run."""
    first = f"{spec.models[0]}-seed{spec.seeds[0]}"
    return left_out_from(json.loads(store.record_path(first).read_text()))


def left_out_from(record: dict) -> str:
    """How many test queries each label of ``record`` leaves out (no positive label)."""
    parts = []
    for label, metrics in record["metrics"].items():
        name = next((n for n in metrics if n.startswith("ndcg@")), "mrr")
        if name in metrics and "left_out" in metrics[name]:
            total = metrics[name]["left_out"] + metrics[name]["counted"]
            parts.append(f"{label} {metrics[name]['left_out']} of {total}")
    return ("Queries left out (no positive label): " + "; ".join(parts) + ".") if parts else ""


def _tuned_line(records: list[dict]) -> str:
    """Where the tuned rows' settings come from: the study folder, the data it was tuned on,
    the budget every model had and what each study used of it."""
    first = records[0]["tuned"]
    budget = first.get("budget")
    given = ""
    if budget:  # records made before best files kept the budget have none
        cap = budget["timeout_s"]
        cap = f"a {cap:g} s time cap" if cap is not None else "no time cap"
        given = (
            f"with a budget per model of {budget['trials']} trials and {cap} "
            f"({budget['sampler']} sampler, seed {budget['seed']}), "
        )
    studies = "; ".join(
        f"{r['model']} {r['tuned']['trials_done']} trials"
        + (", stopped by the time cap" if r["tuned"].get("stopped_by") == "timeout" else "")
        + f", best trial {r['tuned']['trial']} (validation {r['tuned']['value']:.4f})"
        for r in records
    )
    return (
        f"Tuned rows (`(tuned)`): each model's best settings from `{first['folder']}`, tuned on "
        f"{first['tuned_on']['benchmark']}, {given}chosen on {OBJECTIVE} (never the test "
        f"split): {studies}."
    )


def record_processor(record: dict) -> str | None:
    """The processor a run trained on, as its record names it (None: made before records did)."""
    return (record.get("environment") or {}).get("cpu")


def processors_line(processors: Iterable[str | None]) -> str | None:
    """The processors a table's runs trained on (one entry per run, None where its record
    does not name one): a torch model trained again on another processor gives other last
    bits, so a table made on several machines says so. None when no run names one."""
    counts = Counter(processors)
    unnamed = counts.pop(None, 0)
    if not counts:
        return None
    parts = [f"{cpu} ({_runs(n)})" for cpu, n in sorted(counts.items())]
    if unnamed:
        parts.append(f"not named ({_runs(unnamed)}, made before records named the processor)")
    return f"Processors the runs trained on: {'; '.join(parts)}."


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _preparation_line(record: dict) -> str:
    """The data's preparation, per stage, as the process that trained ``record`` measured it."""
    stages = "; ".join(
        f"{stage} {values['seconds']:.1f} s, peak {values['peak_mb']:,.0f} MiB"
        for stage, values in record["preparation"].items()
    )
    return (
        f"Preparing the data (wall time, this process's peak resident memory), in the process "
        f"that trained {record['run_id']}: {stages}."
    )
