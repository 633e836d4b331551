"""Labels, features and an XGBoost fit as the log grows: the whole log in memory, read a part
at a time (``data.part_rows``), and counted on ``--dask local``.

    python benchmarks/scripts/bench_scaling.py [--impressions 1000000 5000000 20000000]
        [--modes whole parts dask] [--part-rows 1000000] [--threads 2] [--no-fit]

The logs are the ``large`` preset's (50,000 products, 100,000 users, 20 items per request)
with ``n_requests`` set to give each size. Each (size, mode) runs in a process of its own, so
that its peak memory is its own; stages are those of ``SearchLogDataModule.setup``: ``load``
(simulate, validate, split, the query-title similarity, whose encoder cache is warm after the
first run), ``labels``, ``features`` (and the arrays), then the ``fit`` of XGBoost (its
default settings; on the cluster with ``dask``). Printed per stage: wall time and this
process's peak resident memory during it (sampled every 50 ms; for ``dask`` also the
workers' peaks, summed); then one Markdown table of all runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ITEMS_PER_REQUEST = 20  # the large preset's


def measure(impressions: int, mode: str, part_rows: int, threads: int, fit: bool) -> dict:
    """One size in one mode, in this process."""
    from benchmarks.records import StageMemory
    from datamodules.threads import apply_threads

    apply_threads(threads)
    cluster = None
    if mode == "dask":
        from datamodules.cluster import connect

        cluster = connect("local")  # before the data work, as the command line does
    from datamodules.search_log import DataConfig, SearchLogDataModule
    from datamodules.sources import SimulatorSource

    source = SimulatorSource("large", {"n_requests": impressions // ITEMS_PER_REQUEST})
    config = DataConfig(part_rows=part_rows if mode == "parts" else None)
    memory = StageMemory()
    datamodule = SearchLogDataModule(source, config, cluster=cluster, on_stage=memory.stage)
    datamodule.setup()
    result = {"impressions": impressions, "mode": mode, "fingerprint": datamodule.fingerprint}
    if fit:
        from models import create_ranker

        ranker = create_ranker("xgboost")
        ranker.dask_client = datamodule.dask_client  # as the driver sets it from --dask
        memory.stage("fit")
        ranker.fit(datamodule)
    memory.close()
    if cluster is not None:
        peaks = cluster.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        result["workers_peak_mb"] = sum(peaks.values()) / 1024
        cluster.close()
    result["seconds"], result["peak_mb"] = memory.seconds, memory.peaks
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| impressions | mode | load s | load peak MiB | label s | label peak MiB | features s "
        "| features peak MiB | fit s | fit peak MiB | Dask workers' peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s, m = r["seconds"], r["peak_mb"]

        def cell(values, stage, form):
            return form.format(values[stage]) if stage in values else "-"

        workers = f"{r['workers_peak_mb']:.0f}" if "workers_peak_mb" in r else "-"
        lines.append(
            f"| {r['impressions']:,} | {r['mode']} | {cell(s, 'load', '{:.1f}')} "
            f"| {cell(m, 'load', '{:.0f}')} | {cell(s, 'labels', '{:.1f}')} "
            f"| {cell(m, 'labels', '{:.0f}')} | {cell(s, 'features', '{:.1f}')} "
            f"| {cell(m, 'features', '{:.0f}')} | {cell(s, 'fit', '{:.1f}')} "
            f"| {cell(m, 'fit', '{:.0f}')} | {workers} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, nargs="+", default=[10**6, 5 * 10**6, 2 * 10**7])
    parser.add_argument("--modes", nargs="+", default=["whole", "parts", "dask"])
    parser.add_argument("--part-rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-fit", action="store_true", help="labels and features only")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    fit = not args.no_fit
    if args.one:  # the child: one size, one mode, one JSON line
        result = measure(args.impressions[0], args.modes[0], args.part_rows, args.threads, fit)
        print("RESULT " + json.dumps(result))
        return
    print(f"threads {args.threads}, part_rows {args.part_rows:,}, fit {'XGBoost' if fit else 'no'}")
    results = []
    for impressions in args.impressions:
        for mode in args.modes:
            command = [sys.executable, __file__, "--one", "--impressions", str(impressions)]
            command += ["--modes", mode, "--part-rows", str(args.part_rows)]
            command += ["--threads", str(args.threads), *(["--no-fit"] if not fit else [])]
            done = subprocess.run(command, capture_output=True, text=True)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode or not line:
                print(f"{impressions:,} {mode}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            result = json.loads(line[0].removeprefix("RESULT "))
            results.append(result)
            stages = ", ".join(
                f"{stage} {seconds:.1f} s / {result['peak_mb'][stage]:.0f} MiB"
                for stage, seconds in result["seconds"].items()
            )
            print(f"{impressions:,} {mode} ({result['fingerprint']}): {stages}", flush=True)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
