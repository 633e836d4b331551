"""Labels and features built in one process against ``--dask local``, in one run.

    python benchmarks/scripts/bench_dask.py [--preset ci]

The LocalCluster (one worker per core, as ``--dask local`` starts it, before any data work)
is started first and timed apart. The log is loaded and split, and the query-title
similarity computed (cached after the first run), once; then the labels and the features
(``relevance_labels`` and ``build_features``, what ``SearchLogDataModule.setup`` spends its
time on besides the encoder) are built once to warm up, once in this process and once with
the counts made on the cluster. Printed: each build's time and peak memory (this process's
resident memory; for Dask also the workers' peaks, summed), the ratios, and whether both
builds are identical (they must be).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Nothing else is imported up here: the LocalCluster's worker processes import this script,
# and would otherwise load (and count) the text encoder's torch as well.


def build(log, assignment, similarity, config, cluster):
    """The labels, then the features, as the DataModule builds them."""
    from datamodules.features import build_features
    from datamodules.labels import relevance_labels

    relevance = relevance_labels(log, assignment, config.labels, similarity, cluster)
    labels = log.impressions.select(list(log.behaviours)).with_columns(relevance)
    built = build_features(
        log, assignment, labels, config.features, config.split.seed, similarity, cluster
    )
    return built.rows


def timed(function, *args):
    from benchmarks.records import PeakMemory

    with PeakMemory(interval_s=0.01) as memory:
        start = time.perf_counter()
        result = function(*args)
        seconds = time.perf_counter() - start
    return result, seconds, memory.peak_mb


def worker_peaks_mb(cluster) -> float:
    """The workers' peak resident memory since they started, summed (Linux: ru_maxrss in KiB)."""
    peaks = cluster.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return sum(peaks.values()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description="Labels and features: one process vs Dask.")
    parser.add_argument("--preset", default="ci")
    args = parser.parse_args()
    from datamodules.cluster import connect

    # Started first, as the command line does, before the encoder's torch is imported here:
    # the workers' resident memory would count what this process holds when they start.
    start = time.perf_counter()
    cluster = connect("local")
    started = time.perf_counter() - start
    print(f"LocalCluster: {cluster.n_workers} workers, started in {started:.1f} s")

    from datamodules.labels import pair_similarities
    from datamodules.search_log import DataConfig, load_split_log
    from datamodules.sources import SimulatorSource
    from datamodules.text_encoding import TextEncoder

    config = DataConfig()

    start = time.perf_counter()
    log, assignment, _ = load_split_log(SimulatorSource(args.preset), config.split)
    similarity = pair_similarities(log, TextEncoder(config.labels.encoder))
    print(
        f"{args.preset}: {log.impressions.height:,} impressions; log and similarity "
        f"{time.perf_counter() - start:.1f} s"
    )
    inputs = (log, assignment, similarity, config)
    build(*inputs, None)  # warm-up: imports and first calls

    alone, alone_s, alone_mb = timed(build, *inputs, None)
    on_dask, dask_s, dask_mb = timed(build, *inputs, cluster)
    workers_mb = worker_peaks_mb(cluster)
    cluster.close()

    print(f"one process : {alone_s:6.2f} s, peak {alone_mb:7.0f} MiB")
    print(
        f"dask local  : {dask_s:6.2f} s, peak {dask_mb:7.0f} MiB here + {workers_mb:.0f} MiB "
        f"in the workers"
    )
    print(
        f"ratios (dask / one process): time {dask_s / alone_s:.2f}, memory here "
        f"{dask_mb / alone_mb:.2f}, all processes {(dask_mb + workers_mb) / alone_mb:.2f}"
    )
    print(f"labels and features identical: {on_dask.equals(alone)}")


if __name__ == "__main__":
    main()
