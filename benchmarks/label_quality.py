"""How well labels agree with the truth: per-request NDCG@10 and Kendall's tau-b.

For each request, its items are ranked by a label (derived grade, raw click rate,
similarity...) and that ranking is compared with the items' true relevance: NDCG@10 with
the true grades as gains (ties in the label averaged, as everywhere in rankbench), and
Kendall's tau-b between label and truth. Both are averaged over requests; a request where
either side is constant has no tau and is left out of that mean.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from benchmarks.metrics import ndcg


def kendall_tau_b(x: np.ndarray, y: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Tau-b per group (NaN where undefined), vectorized over groups padded to a square.

    ``group`` numbers the groups 0..G-1 and rows of a group are contiguous.
    """
    sizes = np.bincount(group)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    longest = int(sizes.max())
    column = np.arange(len(group)) - offsets[group]
    padded_x = np.full((len(sizes), longest), np.nan)
    padded_y = np.full((len(sizes), longest), np.nan)
    padded_x[group, column] = x
    padded_y[group, column] = y
    dx = np.sign(padded_x[:, :, None] - padded_x[:, None, :])
    dy = np.sign(padded_y[:, :, None] - padded_y[:, None, :])
    valid = ~np.isnan(dx) & ~np.isnan(dy)
    upper = np.triu(np.ones((longest, longest), dtype=bool), k=1)[None]
    pairs = valid & upper
    concordance = np.where(pairs, dx * dy, 0).sum(axis=(1, 2))
    untied_x = (pairs & (dx != 0)).sum(axis=(1, 2))
    untied_y = (pairs & (dy != 0)).sum(axis=(1, 2))
    denominator = np.sqrt(untied_x.astype(np.float64) * untied_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, concordance / denominator, np.nan)


def agreement(
    truth: np.ndarray, labels: dict[str, np.ndarray], request_id: np.ndarray
) -> pl.DataFrame:
    """One row per label: mean NDCG@10 and Kendall's tau-b against ``truth`` over requests."""
    order = np.argsort(request_id, kind="stable")
    group = np.unique(request_id[order], return_inverse=True)[1]
    rows = []
    for name, values in labels.items():
        values = np.asarray(values, dtype=np.float64)[order]
        tau = kendall_tau_b(values, truth[order].astype(np.float64), group)
        result = ndcg(truth[order], values, group, k=10)
        rows.append(
            {
                "label": name,
                "ndcg@10": result.mean,
                "kendall_tau": float(np.nanmean(tau)) if np.isfinite(tau).any() else float("nan"),
                "requests": int(result.counted),
            }
        )
    return pl.DataFrame(rows)
