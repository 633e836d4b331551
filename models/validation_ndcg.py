"""NDCG@k for early stopping and checkpointing, in torch: the one variant of the reported
metric (``benchmarks/metrics.py``) that models use, because models never import benchmarks.

Same definition (gain 2^rel - 1, discount 1 / log2(rank + 1), queries without a positive
label left out); ties in the scores are broken by row order instead of averaged, so the two
agree exactly on tie-free scores (tested in ``tests/models/test_validation_ndcg.py``).
"""

from __future__ import annotations

import numpy as np
import torch


def batch_ndcg(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, k: int = 10):
    """Sum of NDCG@k over padded query groups ``[groups, list]`` with a positive label, and
    their count (sums and counts add up across batches and processes)."""
    labels = torch.nan_to_num(labels.to(scores.dtype))
    scores = scores.masked_fill(~mask, float("-inf"))
    gains = torch.where(mask, torch.pow(2.0, labels) - 1.0, torch.zeros_like(labels))
    top = min(k, scores.shape[1])
    discounts = 1.0 / torch.log2(torch.arange(2, top + 2, dtype=scores.dtype))
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :top]
    dcg = (torch.gather(gains, 1, order) * discounts).sum(dim=1)
    ideal = (torch.sort(gains, dim=1, descending=True).values[:, :top] * discounts).sum(dim=1)
    counted = ideal > 0
    return (dcg[counted] / ideal[counted]).sum(), int(counted.sum())


def grouped_ndcg(labels, scores, group, k: int = 10) -> float:
    """Mean NDCG@k over the query groups of flat rows (``group`` a query id per row; 0.0
    when no group has a positive label): :func:`batch_ndcg` on the groups padded."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    _, codes = np.unique(np.asarray(group).reshape(-1), return_inverse=True)
    if codes.size == 0:
        return 0.0
    order = np.argsort(codes, kind="stable")  # each group's rows in their row order
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows, slots = codes[order], np.arange(order.size) - starts[codes[order]]
    shape = (sizes.size, int(sizes.max()))
    padded_scores, padded_labels = np.zeros(shape), np.zeros(shape)
    mask = np.zeros(shape, dtype=bool)
    padded_scores[rows, slots], padded_labels[rows, slots] = scores[order], labels[order]
    mask[rows, slots] = True
    total, count = batch_ndcg(
        torch.from_numpy(padded_scores), torch.from_numpy(padded_labels), torch.from_numpy(mask), k
    )
    return float(total) / count if count else 0.0
