"""A Dask cluster for the log's counts and for XGBoost: the ``dask`` setting (``--dask``).

``dask: local`` starts a ``distributed.LocalCluster`` on this machine: one single-threaded
worker process per core this process may use. ``dask: tcp://HOST:8786`` joins a scheduler
that is already running (its workers need rankbench installed). :func:`connect` is called
before any data work: an address that does not answer within ``CONNECT_TIMEOUT_S`` seconds
ends the command with one line. A process holds one connection per address, closed at exit
(:func:`close_all`).

What runs on the cluster:

- **counting**: a table is sent to the workers in partitions of whole requests
  (:meth:`DaskCluster.scatter`); a counting function, the same polars code the single-process
  path calls (``labeling.log_counts``, ``datamodules.features.fold_sums``), runs on every
  partition, and the partitions' counts are summed on the workers, pairwise
  (:meth:`Partitions.sum`). The counts are whole numbers, so their sum is exactly the
  single-process count, whatever the partitioning; everything computed from them (the
  propensity fit, the priors, the labels and features) runs here, on the sums.
- **XGBoost** trains with ``xgboost.dask`` (``models/xgboost_ranker.py``).

A worker lost (or the scheduler gone) during a stage ends the stage with
:class:`ClusterError`, one line naming it. Nothing is half-written: a data stage fails before
any result is written, a model's fit leaves a failure record (records are written
atomically), and a rerun resumes where the command stopped.
"""

from __future__ import annotations

import atexit
import logging
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, field

import polars as pl

from datamodules.threads import available_cores

CONNECT_TIMEOUT_S = 10.0
PARTITION_ROWS = 1_000_000  # rows per partition, about; at least two partitions per worker
_ADDRESS = re.compile(r"(tcp|tls)://(\[[^\]]+\]|[^:/\s]+):\d+")
_open: dict[str, DaskCluster] = {}


class ClusterError(RuntimeError):
    """A stage that ran on the cluster failed with it (a worker lost, the scheduler gone)."""


def check_address(address: str) -> str:
    """``local`` or a scheduler address; a one-line error otherwise (no connection made)."""
    if address == "local" or _ADDRESS.fullmatch(address):
        return address
    raise ValueError(
        f"dask must be 'local' or a scheduler address such as tcp://HOST:8786, not {address!r}"
    )


@dataclass
class DaskCluster:
    """A connection to a Dask cluster (and the cluster itself, when this process started it)."""

    client: object  # distributed.Client
    address: str
    local: object | None = None  # the distributed.LocalCluster started for ``local``
    closed: bool = field(default=False, init=False)

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    def scatter(self, frame: pl.DataFrame, stage: str) -> Partitions:
        """``frame`` sent to the workers in partitions of whole requests."""
        parts = partitions_by_request(frame, self.n_partitions(frame.height))
        with cluster_stage(stage):
            return Partitions(self, self.client.scatter(parts), stage)

    def n_partitions(self, rows: int) -> int:
        return max(2 * self.n_workers, math.ceil(rows / PARTITION_ROWS))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _open.pop(self.address, None)
        self.client.close()
        if self.local is not None:
            self.local.close()


@dataclass
class Partitions:
    """A table's partitions on the workers, to count on."""

    cluster: DaskCluster
    futures: list
    stage: str

    def sum(self, count: Callable, add: Callable):
        """``add`` over ``count`` of every partition: both run on the workers (pass module-level
        functions, or ``functools.partial`` of them, so that the workers can import them)."""
        client = self.cluster.client
        with cluster_stage(self.stage):
            parts = [client.submit(count, part) for part in self.futures]
            while len(parts) > 1:  # pairwise, so no worker receives every partition's counts
                pairs = [parts[i : i + 2] for i in range(0, len(parts), 2)]
                parts = [client.submit(add, pair) if len(pair) == 2 else pair[0] for pair in pairs]
            return parts[0].result()


def partitions_by_request(frame: pl.DataFrame, n: int) -> list[pl.DataFrame]:
    """``frame`` cut into at most ``n`` parts, every request's rows in one part."""
    part = pl.col("request_id").hash(seed=0) % n
    parts = frame.with_columns(_part=part).partition_by("_part", include_key=False)
    return parts or [frame]  # an empty table is one empty part, counted as such


@contextmanager
def cluster_stage(stage: str) -> Iterator[None]:
    """Turns the cluster's own failures during ``stage`` into one line naming it."""
    from distributed.client import ClosedClientError
    from distributed.scheduler import KilledWorker

    try:
        yield
    except KilledWorker as error:
        raise ClusterError(_message(stage, "worker lost", error)) from None
    except CancelledError as error:
        raise ClusterError(_message(stage, "results lost with a worker", error)) from None
    except (OSError, ClosedClientError) as error:
        raise ClusterError(_message(stage, "connection to the cluster lost", error)) from None


def _message(stage: str, what: str, error: Exception) -> str:
    lines = str(error).strip().splitlines()
    first = lines[0].split(". ")[0] if lines else ""  # Dask's messages run on for sentences
    return f"dask: {stage}: {what} ({type(error).__name__}: {first[:200]}); rerun to resume"


def connect(address: str) -> DaskCluster:
    """The connection to ``address`` (``local``: a LocalCluster started now), opened once
    per process; a one-line ``ValueError`` when the scheduler cannot be reached."""
    check_address(address)
    if address in _open:
        return _open[address]
    from distributed import Client

    # Dask's INFO lines (workers registering, connections closing) would drown the run's own.
    logging.getLogger("distributed").setLevel(logging.WARNING)

    if address == "local":
        cluster = _local_cluster()
        opened = DaskCluster(Client(cluster), address, cluster)
    else:
        try:
            opened = DaskCluster(Client(address, timeout=CONNECT_TIMEOUT_S), address)
        except OSError as error:  # refused, unknown host, or no answer within the timeout
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(f"dask: cannot reach the scheduler at {address} ({first})") from None
    _open[address] = opened
    return opened


def _local_cluster():
    """One single-threaded worker process per core this process may use."""
    from distributed import LocalCluster

    cores = available_cores()
    one_thread = {name: "1" for name in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS")}
    return LocalCluster(
        n_workers=cores,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: two runs on one machine do not collide
        silence_logs=logging.ERROR,
        env=one_thread,  # a worker is one core: its polars and XGBoost use one thread
    )


def close_all() -> None:
    """Close every connection (and LocalCluster) this process opened."""
    for cluster in list(_open.values()):
        cluster.close()


atexit.register(close_all)
