"""Several model x seed runs at a time (``jobs``), each in a process of its own.

A run's numbers depend on its thread count, not on what else runs: each worker process runs
one fit at a time with the run's ``threads`` threads, so a record made by a worker is the
record a one-at-a-time command makes at that thread count, and either reuses the other's.
On few cores the neural rankers' small matrix products keep one core busy, not two, so two
1-thread runs side by side do nearly twice the work of one 2-thread run.

Workers are spawned, not forked (polars' and OpenMP's thread pools do not survive a fork),
and each prepares the data itself from the caches the first preparation filled (seconds);
a worker whose data is not the parent's (dataset fingerprint, split) stops the command.
Runs start longest first, by the fit time their last record took where there is one (runs
never made start first), so the last one to finish is a short one.

Records are written by the worker that made them (one file per run, written atomically), the
W&B ledger and the command's lines by the parent.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.records import RunStore
from benchmarks.spec import RunSpec


@dataclass(frozen=True)
class RunTask:
    """One model x seed run, as the parent decided it (the spec it runs under, its config
    and hash, its W&B name and config, what its record adds)."""

    model: str
    seed: int
    run_id: str
    name: str  # its W&B run
    run_spec: RunSpec
    run_config: dict
    expected_hash: str
    shown: dict  # its W&B config
    extra: dict


@dataclass(frozen=True)
class RunResult:
    """What a run came to: its record, or its failure record; the W&B run it streamed to."""

    task: RunTask
    record: dict | None
    failure: dict | None
    wandb_id: str | None


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to prepare the parent's data and run its tasks."""

    spec: RunSpec  # the spec the parent prepared the data from
    fingerprint: str
    split_hash: str
    threads: int
    runs_folder: Path
    wandb: tuple[str, str, str, Path]  # mode, project, group, folder
    modules: tuple[str, ...]  # where the models are registered (plugins, tests)
    execute: Callable[..., RunResult]  # (task, datamodule, store, wandb, threads) -> result


def longest_first(tasks: list[RunTask], store: RunStore) -> list[RunTask]:
    """``tasks`` by the fit time of their last record, longest first; never-made ones first."""

    def last_fit(task: RunTask) -> float:
        try:
            record = json.loads(store.record_path(task.run_id).read_text())
            return float(record["wall_time_s"]["fit"])
        except (OSError, ValueError, KeyError, TypeError):
            return float("inf")

    return sorted(tasks, key=last_fit, reverse=True)  # stable: equal times keep their order


def run_in_workers(setup: WorkerSetup, tasks: list[RunTask], jobs: int) -> Iterator[RunResult]:
    """Run ``tasks`` in ``jobs`` worker processes, yielding each result as it finishes; one
    line if a worker cannot prepare the data or dies (the finished runs' records stay)."""
    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(tasks))
    with ProcessPoolExecutor(workers, context, initializer=_start, initargs=(setup,)) as pool:
        futures = {pool.submit(_work, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool:
            raise RuntimeError(
                "a run's worker process died (out of memory, or killed); the runs that finished "
                "are recorded: run the command again to resume"
            ) from None
        finally:
            for future in futures:
                future.cancel()


# ---------------------------------------------------------------------- in the worker

_WORKER: dict[str, Any] = {}


def _start(setup: WorkerSetup) -> None:
    """A worker's data and stores; an error is kept and raised by its first task."""
    try:
        from benchmarks.runner import prepare_datamodule
        from benchmarks.wandb_logging import WandbRuns
        from datamodules.threads import apply_threads

        for module in setup.modules:
            importlib.import_module(module)  # registers models defined outside `models/`
        threads = apply_threads(setup.threads)
        datamodule = prepare_datamodule(setup.spec, progress=False, echo=lambda *_: None)
        made = (datamodule.fingerprint, datamodule.split_hash)
        if made != (setup.fingerprint, setup.split_hash):
            raise RuntimeError(
                f"a worker prepared other data (fingerprint {made[0]}, split {made[1]}) than "
                f"the command ({setup.fingerprint}, {setup.split_hash}); run with --jobs 1"
            )
        _WORKER.update(
            datamodule=datamodule,
            store=RunStore(setup.runs_folder),
            wandb=WandbRuns(*setup.wandb),
            threads=threads,
            execute=setup.execute,
        )
    except Exception as error:  # noqa: BLE001 (said by the parent, in one line)
        _WORKER["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"


def _work(task: RunTask) -> RunResult:
    if "error" in _WORKER:
        raise RuntimeError(f"a worker could not prepare the data: {_WORKER['error']}")
    state = _WORKER
    return state["execute"](
        task, state["datamodule"], state["store"], state["wandb"], state["threads"]
    )
