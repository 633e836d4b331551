"""Time rankbench's vectorised NDCG@k against torchmetrics' RetrievalNormalizedDCG.

Builds random data (variable list sizes, graded labels 0-4), checks both implementations agree
on tie-free scores, times both in the same run and prints the speed ratio:

    .venv/bin/python benchmarks/scripts/bench_metrics.py --rows 1000000 --queries 50000 --k 10

torchmetrics' NDCG uses linear gain (gain = rel, see torchmetrics/functional/retrieval/ndcg.py)
and scores every query one by one in a Python loop; ours is compared with ``gain="linear"``.
Queries without a positive label are skipped by both (``empty_target_action="skip"``).
Differences of order 1e-7 come from torchmetrics accumulating its DCG in float32.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchmetrics.retrieval import RetrievalNormalizedDCG

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a plain checkout too

from benchmarks.metrics import ndcg  # noqa: E402


def make_data(
    rows: int, queries: int, seed: int, tie_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, tie-free scores, scores with some ties, and shuffled (non-contiguous) query ids."""
    rng = np.random.default_rng(seed)
    # Variable list sizes: every query gets at least one row, the rest spread unevenly.
    weights = rng.lognormal(0.0, 1.0, queries)
    sizes = 1 + rng.multinomial(rows - queries, weights / weights.sum())
    group_ids = rng.permutation(np.repeat(np.arange(queries), sizes))
    labels = rng.choice(5, size=rows, p=[0.6, 0.2, 0.1, 0.06, 0.04])
    scores = rng.random(rows)  # continuous: no ties (checked below)
    tied = scores.copy()
    snap = rng.random(rows) < tie_fraction
    tied[snap] = np.round(tied[snap], 1)  # a few coarse values shared within queries
    return labels, scores, tied, group_ids


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def torchmetrics_ndcg(labels, scores, group_ids, k: int) -> np.ndarray:
    metric = RetrievalNormalizedDCG(
        top_k=k, empty_target_action="skip", aggregation=lambda values, dim=None: values
    )
    metric.update(
        torch.from_numpy(scores), torch.from_numpy(labels), indexes=torch.from_numpy(group_ids)
    )
    # Per-query values in sorted query-id order, empty queries skipped.
    return metric.compute().double().numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="repeats for rankbench (best)")
    parser.add_argument("--tm-repeats", type=int, default=1, help="repeats for torchmetrics")
    args = parser.parse_args(argv)
    if not 1 <= args.queries <= args.rows:
        parser.error("need 1 <= --queries <= --rows")

    labels, scores, tied, group_ids = make_data(args.rows, args.queries, args.seed)
    group_ids = group_ids.astype(np.int64)
    labels = labels.astype(np.int64)
    n_ties = args.rows - np.unique(np.stack([group_ids, tied.view(np.int64)]), axis=1).shape[1]
    print(
        f"data: {args.rows} rows, {args.queries} queries, k={args.k}, seed={args.seed}; "
        f"tie-free scores for the check, {n_ties} tied rows in the second rankbench timing"
    )

    ours_t, ours = best_time(
        lambda: ndcg(labels, scores, group_ids, k=args.k, gain="linear"), args.repeats
    )
    tied_t, _ = best_time(
        lambda: ndcg(labels, tied, group_ids, k=args.k, gain="linear"), args.repeats
    )
    tm_t, theirs = best_time(
        lambda: torchmetrics_ndcg(labels, scores, group_ids, args.k), args.tm_repeats
    )

    counted = ours.per_query[~np.isnan(ours.per_query)]
    if counted.shape != theirs.shape:
        raise SystemExit(f"query counts differ: {counted.size} vs {theirs.size}")
    max_diff = float(np.abs(counted - theirs).max())
    print(
        f"rankbench ndcg@{args.k}:          {ours_t * 1e3:9.1f} ms (best of {args.repeats}); "
        f"mean {ours.mean:.6f}, left out {ours.left_out}"
    )
    print(f"rankbench ndcg@{args.k} (ties):   {tied_t * 1e3:9.1f} ms (best of {args.repeats})")
    print(
        f"torchmetrics ndcg@{args.k}:       {tm_t * 1e3:9.1f} ms (best of {args.tm_repeats}); "
        f"mean {theirs.mean():.6f}, skipped {args.queries - theirs.size}"
    )
    print(
        f"speed ratio (torchmetrics / rankbench): {tm_t / ours_t:.1f}x; "
        f"max abs difference {max_diff:.1e}"
    )


if __name__ == "__main__":
    main()
