"""The run's thread count: one setting for torch, BLAS/OpenMP, polars and XGBoost.

``threads`` (config) or ``--threads`` (command line); by default the cores this process may
use (``os.sched_getaffinity``), never more. The command line calls :func:`set_thread_env`
before polars, torch or XGBoost are imported (their pools read the environment once), and
:func:`apply_threads` once the run's settings are known. Records store the count: a model
whose numbers depend on it (torch's threaded matrix products and reductions) is reused only
at the same count; XGBoost's hist trees and the data preparation give the same bits at any
count (tested).

Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, where the
environment does not say otherwise). On a 2-core machine with another training job running,
spinning threads made an XGBoost fit 14-24x and a DCN-V2 fit 6-10x slower than on the idle
machine; sleeping ones kept both within 1.4x. The price is paid on an idle machine: small
fits took 1.4-2x longer than with spinning threads (``benchmarks/scripts/bench_threads.py``;
``OMP_WAIT_POLICY=ACTIVE`` brings spinning back on a machine of one's own).
"""

from __future__ import annotations

import os

_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "POLARS_MAX_THREADS",
    "RAYON_NUM_THREADS",
)
_applied: int | None = None


def available_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def resolve_threads(value) -> int:
    """``value`` checked (None: every available core); one-line error when out of range."""
    cores = available_cores()
    if value is None:
        return cores
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"threads must be a whole number from 1 to {cores}, not {value!r}")
    if not 1 <= value <= cores:
        raise ValueError(
            f"threads must be from 1 to {cores} (the cores this process may use), not {value}"
        )
    return value


def set_thread_env(threads: int) -> None:
    """Thread counts for libraries not imported yet and for child processes."""
    for name in _ENV_VARS:
        os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def apply_threads(threads: int) -> int:
    """Limit every thread pool of this process to ``threads``; returns it."""
    global _applied
    import torch
    from threadpoolctl import threadpool_limits

    set_thread_env(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # settable once, before any inter-op work; the first call stands
        pass
    threadpool_limits(limits=threads)  # BLAS and OpenMP runtimes loaded so far
    _applied = threads
    return threads


def current_threads() -> int:
    """The run's thread count: what :func:`apply_threads` set, else every available core."""
    return _applied if _applied is not None else available_cores()
