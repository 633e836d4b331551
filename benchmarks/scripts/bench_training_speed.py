"""Training speed of the neural rankers under each precision and batch size, in one run.

Each model trains a fixed number of epochs (no early stop) on a preset's training split at
every (precision, batch size) given, interleaved so that a busy machine slows every variant
alike. Prints training rows/s, the ratio to the first variant, and the validation NDCG@10
reached, so a faster setting that learns less shows it.

    .venv/bin/python benchmarks/scripts/bench_training_speed.py --preset default \\
        --models ft_transformer mmoe --precisions 32-true bf16-mixed --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import lightning as L

from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource
from datamodules.threads import apply_threads
from models import create_ranker, get_ranker
from models.devices import TrainerConfig


def fit_once(datamodule, model: str, epochs: int, precision: str, scratch: str) -> dict:
    L.seed_everything(0, verbose=False)
    settings = get_ranker(model).Settings(max_epochs=epochs, patience=epochs)
    ranker = create_ranker(model, settings, seed=0)
    ranker.progress = False
    ranker.scratch_dir = scratch
    ranker.trainer_config = TrainerConfig(accelerator="cpu", precision=precision)
    started = time.perf_counter()
    ranker.fit(datamodule)
    seconds = time.perf_counter() - started
    summary = ranker.training_summary
    return {"seconds": seconds, "val": summary.get("best_val_ndcg@10", float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--models", nargs="+", default=["ft_transformer", "mmoe", "dcn_v2"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64], help="groups")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    apply_threads(args.threads)

    base = SearchLogDataModule(SimulatorSource(args.preset))
    base.setup()
    rows = base.arrays("train").n_rows
    variants = [(p, b) for b in args.batch_sizes for p in args.precisions]
    print(f"{args.preset}: {rows:,} training rows, {args.epochs} epochs, {args.threads} threads")
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            first = None
            for precision, batch_size in variants:
                base.config = replace(base.config, batch_size=batch_size)
                result = fit_once(base, model, args.epochs, precision, scratch)
                speed = rows * args.epochs / result["seconds"]
                first = first or speed
                print(
                    f"{model:16s} {precision:11s} batch {batch_size:4d}: {speed:8,.0f} rows/s "
                    f"({speed / first:4.2f}x)  {result['seconds']:6.1f} s  "
                    f"val NDCG@10 {result['val']:.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
