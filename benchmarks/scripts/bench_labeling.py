"""Speed and memory of labeling on the ``large`` preset (1M requests x 20 = 20M impressions).

    python benchmarks/scripts/bench_labeling.py [--preset large] [--method auto]

The log is generated chunk by chunk keeping only the columns labeling reads. The query-title
similarity of every pair is computed first with the text encoder, in a child process so that
the model's memory does not count against labeling (its embeddings come from the on-disk
cache after the first run; this step is timed apart). Then ``derive_labels`` runs end to end
(propensities, debiased smoothed rates, combination, grades) and its time and this process's
peak resident memory (the log included) are printed. Targets: >= 2M impressions/s on 2 cores
and < 4 GiB peak memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.records import PeakMemory  # noqa: E402
from datamodules.labels import LabelConfig, label_log  # noqa: E402
from datamodules.simulator import preset, simulate_chunks  # noqa: E402
from datamodules.text_encoding import TextEncoder, pair_similarity  # noqa: E402
from labeling.log_counts import COUNTED_COLUMNS as COLUMNS  # noqa: E402
from labeling.relevance import LabelingConfig  # noqa: E402


def encode_pairs(pairs_file: Path, similarity_file: Path) -> None:
    pairs = pl.read_parquet(pairs_file)
    similarity = pair_similarity(TextEncoder(), pairs["query"], pairs["title"], progress=True)
    pairs.select("query", "product_id").with_columns(
        similarity=pl.Series(similarity, dtype=pl.Float64)
    ).write_parquet(similarity_file)


def similarity_in_child(impressions: pl.DataFrame, products: pl.DataFrame) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as folder:
        pairs_file, similarity_file = Path(folder) / "pairs.parquet", Path(folder) / "sim.parquet"
        impressions.select("query", "product_id").unique().join(
            products.select("product_id", "title"), on="product_id"
        ).write_parquet(pairs_file)
        child = multiprocessing.get_context("spawn").Process(
            target=encode_pairs, args=(pairs_file, similarity_file)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit("computing the similarity failed")
        return pl.read_parquet(similarity_file)


def main() -> None:
    parser = argparse.ArgumentParser(description="Speed and memory of labeling.")
    parser.add_argument("--preset", default="large")
    parser.add_argument("--method", default="auto", help="auto | intervention | regression_em")
    args = parser.parse_args()

    start = time.perf_counter()
    catalog, chunks = simulate_chunks(preset(args.preset))
    impressions = pl.concat([c.impressions.select(COLUMNS) for c in chunks]).rechunk()
    print(
        f"{args.preset}: {impressions.height:,} impressions generated in "
        f"{time.perf_counter() - start:.1f} s"
    )

    start = time.perf_counter()
    similarity = similarity_in_child(impressions, catalog.products)
    print(
        f"similarity of {similarity.height:,} pairs (text encoding, cached after the first "
        f"run): {time.perf_counter() - start:.1f} s"
    )

    config = LabelConfig(labeling=LabelingConfig(propensity_method=args.method))
    with PeakMemory(interval_s=0.01) as memory:
        start = time.perf_counter()
        labels = label_log(impressions, similarity, config)
        seconds = time.perf_counter() - start
    print(
        f"labeling ({labels.propensity.method}): {seconds:.2f} s, "
        f"{impressions.height / seconds:,.0f} impressions/s (target >= 2,000,000)"
    )
    print(
        f"peak RSS during labeling: {memory.peak_mb / 1024:.2f} GiB, the log and similarity "
        f"included (before labeling: {memory.start_mb / 1024:.2f} GiB; target < 4 GiB)"
    )


if __name__ == "__main__":
    main()
