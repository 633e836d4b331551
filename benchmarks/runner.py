"""The benchmark driver: every model x seed on one DataModule, records, tables, W&B.

A run whose record already exists (same config, data, split, code, lock and, where it
matters, thread count: ``benchmarks/reuse.py``) is skipped, so an interrupted benchmark
resumes where it stopped and a finished one only rebuilds its tables
(``benchmarks/summary.py``, from every valid record of the folder). With tuned settings
(``rankbench bench --tuned``, ``benchmarks/tuning_store.py``) each model also runs with its
tuned settings over the run's own, as ``<model>+tuned-seed<seed>``, its own row.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
from tqdm.auto import tqdm

from benchmarks.config import resolve_jobs, source_for
from benchmarks.evaluation import evaluate_scores
from benchmarks.records import (
    PeakMemory,
    RunStore,
    StageMemory,
    Stopwatch,
    code_hash,
    config_hash,
    environment,
    git_commit,
    package_versions,
)
from benchmarks.reuse import run_settings, stale_reasons
from benchmarks.run_pool import RunResult, RunTask, WorkerSetup, longest_first, run_in_workers
from benchmarks.spec import RunSpec
from benchmarks.summary import write_summary
from benchmarks.tuning_store import Tuned, run_name, tuned_spec
from benchmarks.wandb_logging import WandbRuns, wandb_config
from datamodules import SearchLogDataModule
from datamodules.cluster import connect
from datamodules.threads import apply_threads, resolve_threads
from models import create_ranker, get_ranker
from models.devices import is_first_process


@dataclass
class BenchmarkOutcome:
    folder: Path
    table: pl.DataFrame
    markdown: str
    ran: list[str]
    skipped: list[str]
    stale: list[str]  # "<run id>: <reasons>" of records the table shows apart
    failed: list[str]  # "<run id> at <stage>: <error>" of this command's failed runs
    writer: bool = True  # False in a multi-device run's other processes: nothing written


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


def build_datamodule(spec: RunSpec, progress: bool = True) -> SearchLogDataModule:
    """The DataModule of ``spec``'s dataset, on its Dask cluster where it names one (connected
    here, before any data work, unless the command line did already)."""
    cluster = connect(spec.dask) if spec.dask is not None else None
    return SearchLogDataModule(source_for(spec, progress), spec.data, progress, cluster)


def prepare_datamodule(spec: RunSpec, progress: bool = True, echo=print) -> SearchLogDataModule:
    """Load, label, split and featurise the log a spec names (the costly part of a run)."""
    datamodule = build_datamodule(spec, progress)
    echo(f"preparing {spec.name}: loading, labelling and featurising the log ...")
    memory = StageMemory()
    datamodule.on_stage = memory.stage
    try:
        datamodule.setup()
    finally:
        memory.close()
    # Wall time and peak memory of each stage, kept in the records of the runs trained on it.
    datamodule.preparation = memory.report()
    test = datamodule.arrays("test")
    echo(f"{test.n_groups} test requests, {test.n_rows} rows; split {datamodule.split_hash}")
    return datamodule


def run_benchmark(
    spec: RunSpec,
    command: str,
    progress: bool = True,
    echo=print,
    rerun: bool = False,
    tuned: dict[str, Tuned] | None = None,
) -> BenchmarkOutcome:
    """Run every model x seed, and with ``tuned`` each model's tuned settings too; ``rerun``
    retrains even where a matching record exists. The summary is built from every valid
    record in the folder, not only this command's."""
    for model in spec.models:
        get_ranker(model)  # fail fast on a misspelt model name, before any data work
    apply_threads(resolve_threads(spec.threads))
    folder = spec.folder
    # Under several devices every process walks the same runs; the first one writes.
    first = is_first_process()
    progress, echo = (progress, echo) if first else (False, _silent)
    store = RunStore(folder / "runs", writer=first)
    mode = spec.wandb.mode if first else "disabled"
    wandb = WandbRuns(mode, spec.wandb.project, spec.name, folder)

    datamodule = prepare_datamodule(spec, progress, echo)
    store.clear_scratch()  # checkpoints a killed run left behind
    ran, skipped = run_models(datamodule, spec, store, wandb, progress, rerun, tuned=tuned)
    if not first:
        return BenchmarkOutcome(folder, pl.DataFrame(), "", ran, skipped, [], [], writer=False)

    summary = write_summary(spec, datamodule, store, folder, command)
    for record in summary.valid:  # the group holds every model of the table, each once
        settings = (record["model"], record["seed"], record["config"], record.get("environment"))
        variant = "tuned" if record.get("tuned") else None
        wandb.log_reused(record["run_id"], wandb_config(*settings, variant), record)
    files = [folder / name for name in ("summary.md", "summary.csv", "ndcg.png", "runs")]
    wandb.log_summary(summary.table, {"benchmark": spec.name, "command": command}, files)
    return BenchmarkOutcome(
        folder, summary.table, summary.markdown, ran, skipped, summary.stale, summary.failed
    )


def run_models(
    datamodule: SearchLogDataModule,
    spec: RunSpec,
    store: RunStore,
    wandb: WandbRuns | None = None,
    progress: bool = True,
    rerun: bool = False,
    variant: str | None = None,
    tuned: dict[str, Tuned] | None = None,
) -> tuple[list[str], list[str]]:
    """Train and record every model x seed of ``spec`` on a prepared ``datamodule`` into
    ``store``, and each model of ``tuned`` again with its tuned settings
    (``<model>+tuned-seed<seed>``); returns the run ids (ran, skipped). A run whose record
    matches is skipped unless ``rerun`` (and logged to W&B once, as reused); a new run
    streams to its W&B run while it trains (an ablation names its runs by ``variant``). A
    run that raises, or scores a row NaN or infinite, leaves a failure record (model, seed,
    stage, error) and the others go on; it is tried again by the next command."""
    ran, skipped = [], []
    say = tqdm.write if store.writer else _silent  # one process speaks for a multi-device run
    threads = apply_threads(resolve_threads(spec.threads))
    tuned = tuned or {}
    runs = []
    for model in spec.models:  # each model's own runs, then its tuned ones
        for found in [None, tuned[model]] if model in tuned else [None]:
            runs += [(model, seed, found) for seed in spec.seeds]
    tasks = []
    for model, seed, found in runs:
        run_spec = spec if found is None else tuned_spec(spec, model, found.settings)
        run_id = f"{run_name(model, found is not None)}-seed{seed}"
        run_config = run_settings(run_spec, datamodule, model)
        expected = config_hash(run_config)
        record = None if rerun else store.finished(run_id, expected)
        name = f"{variant}-seed{seed}" if variant else run_id
        shown_variant = variant or ("tuned" if found is not None else None)
        shown = wandb_config(model, seed, run_config, environment(threads), shown_variant)
        if record and not stale_reasons(record, datamodule, run_spec, threads):
            say(f"skip {run_id}: finished earlier (record {store.record_path(run_id)})")
            if wandb is not None:
                wandb.log_reused(name, shown, record)
            skipped.append(run_id)
            continue
        extra = {} if found is None else {"tuned": found.provenance()}
        task = RunTask(model, seed, run_id, name, run_spec, run_config, expected, shown, extra)
        tasks.append(task)

    jobs = resolve_jobs(spec) if store.writer else 1
    if jobs > 1 and len(tasks) > 1:
        say(f"{len(tasks)} runs, {jobs} at a time, {threads} thread(s) each")
        setup = _worker_setup(spec, datamodule, store, wandb, threads)
        results = run_in_workers(setup, longest_first(tasks, store), jobs)
    else:
        results = (execute_task(t, datamodule, store, wandb, threads, progress) for t in tasks)
    for result in tqdm(results, total=len(tasks), desc="runs", unit="run", disable=not progress):
        if result.failure is not None:
            failure = result.failure
            say(f"failed {failure['run_id']} at {failure['stage']}: {failure['error']}")
            continue
        if wandb is not None and result.wandb_id is not None:
            wandb.remember(result.record, result.wandb_id)  # one writer of the W&B ledger
        record = result.record
        fit = record["wall_time_s"]["fit"]
        say(f"done {record['run_id']}: fit {fit:.1f}s, {_headline(record)}")
        ran.append(record["run_id"])
    return ran, skipped


def execute_task(
    task: RunTask,
    datamodule,
    store: RunStore,
    wandb: WandbRuns | None,
    threads: int,
    progress: bool = False,
) -> RunResult:
    """Train, score and record one run (or record its failure), streaming to its W&B run;
    in this process or in a worker of ``--jobs``."""
    live = wandb.start(task.name, task.shown) if wandb is not None else None
    try:
        record = _run_one(
            datamodule,
            task.model,
            task.seed,
            task.run_config,
            task.expected_hash,
            task.run_spec,
            store,
            threads,
            progress,
            live,
            task.run_id,
            task.extra,
        )
    except RunFailed as failure:
        failed = failure.record(task.run_id, task.model, task.seed) | task.extra
        store.write_failure(failed)
        if wandb is not None:
            wandb.finish(live, None, failed)
        return RunResult(task, None, failed, None)
    store.clear_failure(task.run_id)
    if wandb is not None:
        wandb.finish(live, record, remember=False)
    return RunResult(task, record, None, live.id if live is not None else None)


def _worker_setup(spec, datamodule, store, wandb, threads) -> WorkerSetup:
    modules = {get_ranker(model).__module__ for model in spec.models} - {"__main__"}
    logging = (wandb.mode, wandb.project, wandb.group, wandb.folder) if wandb else None
    return WorkerSetup(
        spec=spec,
        fingerprint=datamodule.fingerprint,
        split_hash=datamodule.split_hash,
        threads=threads,
        runs_folder=store.folder,
        wandb=logging or ("disabled", spec.wandb.project, str(spec.name), spec.folder),
        modules=tuple(sorted(modules)),
        execute=execute_task,
    )


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
    spec: RunSpec,
    store: RunStore,
    threads: int,
    progress: bool = True,
    live=None,
    run_id: str | None = None,
    extra: dict | None = None,
) -> dict:
    stage = "build"
    try:
        L.seed_everything(seed, verbose=False)
        ranker = create_ranker(model, spec.ranker_settings(model), seed)
        if hasattr(ranker, "progress"):
            ranker.progress = progress  # per-epoch bars of neural rankers follow --quiet
        if hasattr(ranker, "scratch_dir"):
            ranker.scratch_dir = str(store.scratch)
        ranker.trainer_config = spec.trainer  # read by the rankers that train on devices
        ranker.dask_client = datamodule.dask_client  # read by the rankers that train on Dask
        ranker.wandb_run = live  # rankers that log while they train use it
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
            ks=spec.metrics.ks,
            gain=spec.metrics.gain,
            convention=spec.metrics.scoring(),
        )
    except Exception as error:  # noqa: BLE001 (any model error: recorded, the rest go on)
        raise RunFailed(stage, error) from error
    record = {
        "run_id": run_id or f"{model}-seed{seed}",
        "benchmark": spec.name,
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
        "preparation": getattr(datamodule, "preparation", None),
        "training": ranker.training_summary,
        "metrics": metrics,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **(extra or {}),  # a tuned run's settings and where they came from
    }
    store.write(record, per_query)
    return record


def _silent(*_args, **_kwargs) -> None:
    """The echo of a multi-device run's other processes: the first one speaks."""


def _headline(record: dict) -> str:
    for label in ("true_relevance", "relevance"):
        if label in record["metrics"]:
            name = max(record["metrics"][label], key=lambda n: int(n.split("@")[1]))
            return f"{name.upper()} {label} {record['metrics'][label][name]['mean']:.4f}"
    return ""
