"""Run records: what one model x seed run did, written atomically so a crash loses nothing.

A record is a JSON file (config and its hash, git commit, package versions, split hash,
dataset fingerprint, wall time, peak memory, metrics) beside a Parquet file of per-query
metrics. The JSON is written last: its presence means the run finished.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from functools import cache
from importlib import metadata
from pathlib import Path

import polars as pl
import psutil

from datamodules.atomic import atomic_path, atomic_write_text

PACKAGES = (
    "rankbench",
    "torch",
    "lightning",
    "xgboost-cpu",
    "lightgbm",
    "numpy",
    "polars",
    "scikit-learn",
    "scipy",
    "torchmetrics",
    "wandb",
    "pytorch-tabnet",
    "rtdl-revisiting-models",
    "transformers",
)


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def atomic_write_parquet(path: Path, table: pl.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


CODE_PACKAGES = ("benchmarks", "models", "datamodules", "labeling")
# What scores a run's predictions; with the ranker's own code, what a record depends on.
SCORING_MODULES = ("benchmarks.evaluation",)
ROOT = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> Path | None:
    """The source file of a rankbench module named ``name`` (None for anything else)."""
    if name.split(".")[0] not in CODE_PACKAGES:
        return None
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Modules a file imports (``import a.b``, ``from a.b import c``: ``a.b`` and ``a.b.c``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def source_closure(paths: list[Path]) -> list[Path]:
    """``paths`` and every rankbench source file they import, directly or not."""
    seen: set[Path] = set()
    pending = [p.resolve() for p in paths]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            found = _module_file(name)
            if found is not None and found not in seen:
                pending.append(found)
    return sorted(seen)


def code_hash(ranker_class: type | None = None) -> str:
    """A hash of the code a run's record depends on: the file defining ``ranker_class`` (a
    plugin may live outside rankbench), the scoring code, and every rankbench file they
    import, directly or not. A change anywhere else (a loader the run did not use, the
    reporting, the command line) leaves finished runs valid; the data a model trained on is
    checked separately, by the DataModule's fingerprint of its arrays."""
    roots = [_module_file(name) for name in SCORING_MODULES]
    source = inspect.getsourcefile(ranker_class) if ranker_class is not None else None
    if source and Path(source).is_file():
        roots.append(Path(source))
    digest = hashlib.sha256()
    for path in source_closure([p for p in roots if p is not None]):
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        digest.update(str(name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def git_commit(cwd: Path | None = None) -> dict:
    """The commit the code ran at, and whether the work tree had uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            # Code only: regenerated results are not a change to what ran.
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)results",
            ],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(status)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


LOCK_FILE = ROOT / "requirements.lock"


@cache
def lock_hash() -> str | None:
    """The reference environment's identity: a hash of ``requirements.lock`` (None where the
    suite runs without its repository, e.g. installed as a library)."""
    if not LOCK_FILE.is_file():
        return None
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(text: str) -> dict[str, str]:
    """``name==version`` lines of a pip-compile lock (comments and options skipped)."""
    pinned = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pinned[_normalised(name.split("[")[0].strip())] = version.split(";")[0].strip()
    return pinned


@cache
def lock_differences() -> tuple[str, ...]:
    """Installed packages whose version is not the lock's: ``name installed (lock x)``."""
    if not LOCK_FILE.is_file():
        return ()
    differences = []
    for name, locked in sorted(locked_versions(LOCK_FILE.read_text()).items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != locked:
            differences.append(f"{name} {installed} (lock {locked})")
    if differences:
        shown = ", ".join(differences[:8]) + (" ..." if len(differences) > 8 else "")
        print(
            f"rankbench: warning: {len(differences)} installed package(s) differ from "
            f"requirements.lock: {shown}; run records note them (`make install` syncs)",
            file=sys.stderr,
        )
    return tuple(differences)


def environment(threads: int) -> dict:
    """What a record needs to say about where it ran: the lock, how the installed packages
    differ from it, the thread count, the Python version, the kind of processor (the
    instruction set torch computes with) and the processor itself."""
    from models.devices import processor_kind  # torch: only where a run is recorded

    return {
        "lock": lock_hash(),
        "lock_differences": list(lock_differences()),
        "threads": threads,
        "python": ".".join(map(str, sys.version_info[:3])),
        "processor": processor_kind(),
        "cpu": cpu_model(),
    }


@cache
def cpu_model() -> str:
    """The processor's vendor and model name (``/proc/cpuinfo``; elsewhere what ``platform``
    says). MKL picks its kernels by vendor as well as by instruction set: an AMD EPYC and an
    Intel machine, both AVX-512, train the same torch model to other last bits."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    parts = [fields.get("vendor_id", ""), fields.get("model name", "") or platform.processor()]
    return " ".join(p for p in parts if p) or platform.machine()


class PeakMemory:
    """Samples this process's resident memory in a thread; ``peak_mb`` after the block.

    Sampling sees native allocations (XGBoost, torch) that tracemalloc would miss.
    ``start_mb`` is the resident memory on entry, so ``peak_mb - start_mb`` is what the block
    added on top of the process (the data module, imported libraries).
    """

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._process = psutil.Process()
        self._stop = threading.Event()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self.start_mb = self.peak_mb
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class StageMemory:
    """Wall time and peak resident memory per named stage: a :class:`PeakMemory` and a
    :class:`Stopwatch` per stage.

    ``stage(name)`` closes the running stage and starts ``name`` (``"done"`` starts none):
    the ``on_stage`` hook of ``SearchLogDataModule``. ``close()`` ends the last stage.
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self._running: tuple[str, PeakMemory, Stopwatch] | None = None

    def stage(self, name: str) -> None:
        if self._running is not None:
            previous, memory, watch = self._running
            watch.__exit__()
            memory.__exit__()
            self.seconds[previous], self.peaks[previous] = watch.seconds, memory.peak_mb
        self._running = None
        if name != "done":
            self._running = (name, PeakMemory().__enter__(), Stopwatch().__enter__())

    def close(self) -> None:
        self.stage("done")

    def report(self) -> dict[str, dict[str, float]]:
        """``{stage: {"seconds": s, "peak_mb": MiB}}`` in the order the stages ran."""
        return {
            name: {"seconds": seconds, "peak_mb": self.peaks[name]}
            for name, seconds in self.seconds.items()
        }


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RunStore:
    """The folder of one benchmark's run records."""

    # What :meth:`scan` says of a record that is not a finished run.
    UNFINISHED = ("unreadable record", "per-query file missing", "per-query file from another run")

    def __init__(self, folder: Path, writer: bool = True):
        self.folder = Path(folder)
        # False in the other processes of a multi-device run: they read, the first writes.
        self.writer = writer

    def record_path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.json"

    def failure_path(self, run_id: str) -> Path:
        return self.folder / "failed" / f"{run_id}.json"

    @property
    def scratch(self) -> Path:
        """Checkpoints of runs in progress; what a killed run left is removed next time."""
        return self.folder.parent / "scratch"

    def clear_scratch(self) -> None:
        if self.writer:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def write_failure(self, failure: dict) -> None:
        if self.writer:
            atomic_write_text(self.failure_path(failure["run_id"]), json.dumps(failure, indent=2))

    def clear_failure(self, run_id: str) -> None:
        if self.writer:
            self.failure_path(run_id).unlink(missing_ok=True)

    def failures(self) -> list[dict]:
        """The failure records of runs that have not succeeded since."""
        found = []
        for path in sorted((self.folder / "failed").glob("*.json")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return found

    def queries_path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.queries.parquet"

    def finished(self, run_id: str, expected_hash: str) -> dict | None:
        """The run's record if it finished with this config, else None."""
        path = self.record_path(run_id)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if record.get("config_hash") != expected_hash or not self.queries_path(run_id).exists():
            return None
        if record.get("per_query_sha256") != _file_sha256(self.queries_path(run_id)):
            return None  # the two files are not from the same run (a crash in between)
        return record

    def scan(self) -> list[tuple[str, dict | None, str | None]]:
        """Every record in the folder, by run id: ``(run_id, record, problem)``, where
        ``problem`` says why it is not a finished run (None: it is one)."""
        found = []
        for path in sorted(self.folder.glob("*.json")):
            run_id = path.name.removesuffix(".json")
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                found.append((run_id, None, "unreadable record"))
                continue
            queries = self.queries_path(run_id)
            if not queries.exists():
                found.append((run_id, record, "per-query file missing"))
            elif record.get("per_query_sha256") != _file_sha256(queries):
                found.append((run_id, record, "per-query file from another run"))
            else:
                found.append((run_id, record, None))
        return found

    def write(self, record: dict, per_query: pl.DataFrame) -> None:
        if not self.writer:
            return
        run_id = record["run_id"]
        atomic_write_parquet(self.queries_path(run_id), per_query)
        record = {**record, "per_query_sha256": _file_sha256(self.queries_path(run_id))}
        atomic_write_text(self.record_path(run_id), json.dumps(record, indent=2, default=str))

    def per_query(self, run_id: str) -> pl.DataFrame:
        return pl.read_parquet(self.queries_path(run_id))
