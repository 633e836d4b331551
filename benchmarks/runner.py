"""The benchmark driver: every model x seed on one DataModule, records, tables, W&B.

A run whose record already exists (same config, same data, same split) is skipped, so an
interrupted benchmark resumes where it stopped and a finished one only rebuilds its tables.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
from tqdm.auto import tqdm

from benchmarks.config import DEFAULT_MODELS, data_config, source_from_config
from benchmarks.evaluation import evaluate_scores, reference_scores
from benchmarks.plots import plot_summary
from benchmarks.records import (
    PeakMemory,
    RunStore,
    Stopwatch,
    code_hash,
    config_hash,
    environment,
    git_commit,
    lock_hash,
    package_versions,
)
from benchmarks.report import ModelResult, summarise, table_columns, to_markdown
from benchmarks.wandb_logging import WandbLogger
from datamodules import SearchLogDataModule
from datamodules.atomic import atomic_write_text
from datamodules.threads import apply_threads, resolve_threads
from models import create_ranker, get_ranker


@dataclass
class BenchmarkOutcome:
    folder: Path
    table: pl.DataFrame
    markdown: str
    ran: list[str]
    skipped: list[str]
    stale: list[str]  # "<run id>: <reasons>" of records the table shows apart
    failed: list[str]  # "<run id> at <stage>: <error>" of this command's failed runs


def import_plugins(plugins: list[str]) -> None:
    """Import user modules or files so their ``@register``-ed rankers become available."""
    for plugin in plugins:
        path = Path(plugin)
        if path.suffix == ".py":
            if not path.is_file():
                raise ValueError(f"plugin file not found: {path}")
            spec = importlib.util.spec_from_file_location(f"rankbench_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(plugin)


def build_datamodule(config: dict, progress: bool = True) -> SearchLogDataModule:
    return SearchLogDataModule(source_from_config(config, progress), data_config(config), progress)


def prepare_datamodule(config: dict, progress: bool = True, echo=print) -> SearchLogDataModule:
    """Load, label, split and featurise the log a config names (the costly part of a run)."""
    datamodule = build_datamodule(config, progress)
    echo(f"preparing {config['name']}: loading, labelling and featurising the log ...")
    datamodule.setup()
    test = datamodule.arrays("test")
    echo(f"{test.n_groups} test requests, {test.n_rows} rows; split {datamodule.split_hash}")
    return datamodule


def run_benchmark(
    config: dict, command: str, progress: bool = True, echo=print, rerun: bool = False
) -> BenchmarkOutcome:
    """Run every model x seed; ``rerun`` retrains even where a matching record exists. The
    summary is built from every valid record in the folder, not only this command's."""
    for model in config["models"]:
        get_ranker(model)  # fail fast on a misspelt model name, before any data work
    apply_threads(resolve_threads(config.get("threads")))
    folder = Path(config["output"]) / config["name"]
    store = RunStore(folder / "runs")
    wandb = WandbLogger(config["wandb"]["mode"], config["wandb"]["project"], config["name"], folder)

    datamodule = prepare_datamodule(config, progress, echo)
    store.clear_scratch()  # checkpoints a killed run left behind
    ran, skipped = run_models(datamodule, config, store, wandb.log_run, progress, rerun)

    outcome = _report(config, datamodule, store, folder, command, ran, skipped)
    wandb.log_summary(outcome.table, {"benchmark": config["name"], "command": command})
    return outcome


def run_models(
    datamodule: SearchLogDataModule,
    config: dict,
    store: RunStore,
    log_run=None,
    progress: bool = True,
    rerun: bool = False,
) -> tuple[list[str], list[str]]:
    """Train and record every model x seed of ``config`` on a prepared ``datamodule`` into
    ``store``; returns the run ids (ran, skipped). A run whose record matches is skipped
    unless ``rerun``; ``log_run`` receives each new record (W&B). A run that raises, or
    scores a row NaN or infinite, leaves a failure record (model, seed, stage, error) and
    the others go on; it is tried again by the next command."""
    ran, skipped = [], []
    threads = apply_threads(resolve_threads(config.get("threads")))
    runs = [(m, s) for m in config["models"] for s in config["seeds"]]
    for model, seed in tqdm(runs, desc="runs", unit="run", disable=not progress):
        run_id = f"{model}-seed{seed}"
        run_config = _run_config(config, datamodule, model)
        expected = config_hash(run_config)
        record = None if rerun else store.finished(run_id, expected)
        if record and not stale_reasons(record, datamodule, config, threads):
            tqdm.write(f"skip {run_id}: finished earlier (record {store.record_path(run_id)})")
            skipped.append(run_id)
            continue
        try:
            record = _run_one(
                datamodule, model, seed, run_config, expected, config, store, threads, progress
            )
        except RunFailed as failure:
            store.write_failure(failure.record(run_id, model, seed))
            tqdm.write(f"failed {run_id} at {failure.stage}: {failure.message}")
            continue
        store.clear_failure(run_id)
        tqdm.write(f"done {run_id}: fit {record['wall_time_s']['fit']:.1f}s, {_headline(record)}")
        if log_run is not None:
            log_run(record)
        ran.append(run_id)
    return ran, skipped


def _run_config(config: dict, datamodule: SearchLogDataModule, model: str) -> dict:
    resolved = get_ranker(model)({**config["model_config"].get(model, {})}).config
    return {
        "dataset": datamodule.source.describe(),
        "data": config["data"],
        "model": model,
        "model_config": resolved,
        "metrics": config["metrics"],
    }


def stale_reasons(
    record: dict, datamodule: SearchLogDataModule, config: dict, threads: int
) -> list[str]:
    """Why ``record`` is not what this code, data, config, lock and thread count would make
    now (empty: it is valid, and rerunning would redo it)."""
    try:
        ranker = get_ranker(record.get("model", ""))
    except ValueError:
        return ["model not registered in this run (--import its plugin)"]
    reasons = []
    if record.get("config_hash") != config_hash(_run_config(config, datamodule, ranker.name)):
        reasons.append("config")
    if record.get("code_hash") != code_hash(ranker):
        reasons.append("code")
    if record.get("dataset_fingerprint") != datamodule.fingerprint:
        reasons.append("data")
    if record.get("split_hash") != datamodule.split_hash:
        reasons.append("split")
    made_in = record.get("environment") or {}
    if made_in.get("lock") != lock_hash():
        reasons.append("lock")
    if record.get("packages") != package_versions():
        reasons.append("packages")
    if not ranker.thread_independent and made_in.get("threads") != threads:
        reasons.append(f"threads ({made_in.get('threads')}; now {threads})")
    return reasons


class RunFailed(Exception):
    """A model x seed run that raised, at ``stage`` (build, fit, predict or evaluate)."""

    def __init__(self, stage: str, error: Exception):
        lines = str(error).strip().splitlines()
        self.stage = stage
        self.message = f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]
        super().__init__(f"{stage}: {self.message}")

    def record(self, run_id: str, model: str, seed: int) -> dict:
        return {
            "run_id": run_id,
            "model": model,
            "seed": seed,
            "stage": self.stage,
            "error": self.message,
            "git": git_commit(),
            "failed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }


def _run_one(
    datamodule,
    model: str,
    seed: int,
    run_config: dict,
    expected_hash: str,
    config: dict,
    store: RunStore,
    threads: int,
    progress: bool = True,
) -> dict:
    stage = "build"
    try:
        L.seed_everything(seed, verbose=False)
        ranker = create_ranker(model, config["model_config"].get(model, {}), seed)
        if hasattr(ranker, "progress"):
            ranker.progress = progress  # per-epoch bars of neural rankers follow --quiet
        if hasattr(ranker, "scratch_dir"):
            ranker.scratch_dir = str(store.scratch)
        stage = "fit"
        with PeakMemory() as memory, Stopwatch() as fit_time:
            ranker.fit(datamodule)
        stage = "predict"
        with Stopwatch() as predict_time:
            scores = np.asarray(ranker.predict(datamodule, "test"), dtype=np.float64)
        stage = "evaluate"
        metrics, per_query = evaluate_scores(
            datamodule.arrays("test"),
            scores,
            ks=tuple(config["metrics"]["ks"]),
            gain=config["metrics"]["gain"],
        )
    except Exception as error:  # noqa: BLE001 (any model error: recorded, the rest go on)
        raise RunFailed(stage, error) from error
    record = {
        "run_id": f"{model}-seed{seed}",
        "benchmark": config["name"],
        "model": model,
        "seed": seed,
        "config": run_config,
        "config_hash": expected_hash,
        "git": git_commit(),
        "code_hash": code_hash(type(ranker)),
        "packages": package_versions(),
        "environment": environment(threads),
        "split_hash": datamodule.split_hash,
        "dataset_fingerprint": datamodule.fingerprint,
        "wall_time_s": {"fit": fit_time.seconds, "predict": predict_time.seconds},
        "peak_memory_mb": memory.peak_mb,
        "fit_memory_increase_mb": memory.peak_mb - memory.start_mb,
        "training": ranker.training_summary,
        "metrics": metrics,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    store.write(record, per_query)
    return record


def _headline(record: dict) -> str:
    for label in ("true_relevance", "relevance"):
        if label in record["metrics"]:
            name = max(record["metrics"][label], key=lambda n: int(n.split("@")[1]))
            return f"{name.upper()} {label} {record['metrics'][label][name]['mean']:.4f}"
    return ""


def _report(
    config,
    datamodule,
    store: RunStore,
    folder: Path,
    command: str,
    ran: list[str],
    skipped: list[str],
) -> BenchmarkOutcome:
    threads = resolve_threads(config.get("threads"))
    valid, stale = _sort_records(store, datamodule, config, threads)
    models = sorted(valid, key=model_order)
    seeds = {model: sorted(r["seed"] for r in valid[model]) for model in models}
    results = [model_result(store, model, seeds[model]) for model in models]
    uniform = len({tuple(s) for s in seeds.values()}) <= 1
    if not uniform:  # say which seeds each row averages
        for result in results:
            result.name += f" (seeds {', '.join(map(str, seeds[result.name]))})"
    results += _stale_results(store, stale)
    failures = store.failures()
    results += _failed_results(failures)
    results += _reference_results(datamodule, config)
    labels = list(datamodule.arrays("test").labels)
    columns = table_columns(labels, tuple(config["metrics"]["ks"]))
    alpha = config["metrics"]["alpha"]
    table = summarise(results, columns, alpha)
    markdown = to_markdown(table, columns, alpha)
    first = valid[models[0]][0] if models else None
    left_out = left_out_from(first) if first else ""
    all_seeds = sorted({s for model_seeds in seeds.values() for s in model_seeds})
    by_threads = any(not get_ranker(m).thread_independent for m in models)
    over = f"seeds {', '.join(map(str, all_seeds))}" if uniform else "the seeds each row names"
    text = (
        "\n\n".join(
            [
                f"# {config['name']}",
                "Reproduce with: "
                f"`{table_command(command, models, all_seeds, threads if by_threads else None)}`",
                markdown,
                f"Mean ± std over {over} on the test split "
                f"({datamodule.arrays('test').n_groups} requests); bold: best model per column; "
                f"*: differs from the best model by a paired Wilcoxon signed-rank test over "
                f"queries "
                f"(p < {alpha}). `ref:` rows are model-free references. {left_out}",
                f"Split {datamodule.split_hash}, dataset fingerprint {datamodule.fingerprint}, "
                f"lock {lock_hash()}, {threads} thread(s)." + _notes_line(datamodule),
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
    plot_summary(table, columns, folder / "ndcg.png", title=config["name"])
    stale_lines = [f"{run_id}: {', '.join(reasons)}" for run_id, _, reasons in stale]
    failed = [f"{f['run_id']} at {f['stage']}: {f['error']}" for f in failures]
    return BenchmarkOutcome(
        folder, table, markdown + "\n\n" + left_out, ran, skipped, stale_lines, failed
    )


def _sort_records(
    store: RunStore, datamodule, config: dict, threads: int
) -> tuple[dict[str, list[dict]], list[tuple[str, dict | None, list[str]]]]:
    """Every record of the folder: valid ones by model, stale ones with their reasons."""
    valid: dict[str, list[dict]] = {}
    stale = []
    for run_id, record, problem in store.scan():
        reasons = [problem] if problem else stale_reasons(record, datamodule, config, threads)
        if reasons:
            stale.append((run_id, record, reasons))
        else:
            valid.setdefault(record["model"], []).append(record)
    return valid, stale


def _stale_results(store: RunStore, stale) -> list[ModelResult]:
    """One row per model and reason of the stale records that can still be read: a committed
    table never shrinks; it says which rows this code, data or settings would not make."""
    groups: dict[tuple[str, str], list[int]] = {}
    for _, record, reasons in stale:
        if record is not None and "model" in record and not _unreadable(reasons):
            groups.setdefault((record["model"], ", ".join(reasons)), []).append(record["seed"])
    rows = []
    for (model, why), seeds in sorted(groups.items(), key=lambda g: model_order(g[0][0])):
        result = model_result(store, model, sorted(seeds))
        result.name = f"{model} (stale: {why}; seeds {', '.join(map(str, sorted(seeds)))})"
        result.stale = True
        rows.append(result)
    return rows


def _failed_results(failures: list[dict]) -> list[ModelResult]:
    """A row per model whose runs failed (and have not succeeded since): no numbers, but the
    table says the model was run."""
    seeds: dict[str, list[int]] = {}
    for failure in failures:
        seeds.setdefault(failure["model"], []).append(failure["seed"])
    rows = []
    for model in sorted(seeds, key=model_order):
        name = f"{model} (failed; seeds {', '.join(map(str, sorted(seeds[model])))})"
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


def table_command(command: str, models: list[str], seeds: list[int], threads: int | None) -> str:
    """The command that reproduces the whole table: ``command`` with its models, seeds and
    thread count replaced by the table's (and without ``--rerun`` or ``--quiet``)."""
    words = shlex.split(command)
    dropped = {"--models": True, "--seeds": True, "--threads": True, "--rerun": False}
    dropped |= {"--quiet": False, "--wandb": True}
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


def _notes_line(datamodule) -> str:
    """What the adapter dropped, what the dataset lacks and what was skipped for it."""
    if not datamodule.notes:
        return ""
    return " Dataset notes: " + "; ".join(datamodule.notes) + "."


def model_result(store: RunStore, model: str, seeds: list[int]) -> ModelResult:
    """A model's row of a summary: its seeds' means, and per-query values averaged over seeds."""
    records = [json.loads(store.record_path(f"{model}-seed{s}").read_text()) for s in seeds]
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
    )


def _reference_results(datamodule, config: dict) -> list[ModelResult]:
    test = datamodule.arrays("test")
    references = reference_scores(test)
    if "true_relevance" in test.labels:
        references["ideal (true relevance)"] = test.labels["true_relevance"].astype(np.float64)
    results = []
    for name, scores in references.items():
        metrics, per_query = evaluate_scores(
            test, scores, ks=tuple(config["metrics"]["ks"]), gain=config["metrics"]["gain"]
        )
        values = {
            f"{label}/{m}": [r["mean"]] for label, ms in metrics.items() for m, r in ms.items()
        }
        results.append(ModelResult(f"ref: {name}", True, values, per_query, [], []))
    return results


def left_out_note(store: RunStore, config: dict) -> str:
    """How many test queries each label leaves out (no positive label), from the first run."""
    first = f"{config['models'][0]}-seed{config['seeds'][0]}"
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
