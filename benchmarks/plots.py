"""Plots a person would rather look at than read: NDCG@k per model with error bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from datamodules.atomic import atomic_path  # noqa: E402


def plot_summary(table: pl.DataFrame, columns, path: Path, title: str) -> None:
    """Grouped bars of the NDCG columns (mean ± std over seeds), one group per model."""
    ndcg = [c for c in columns if "/ndcg@" in c.key]
    if not ndcg:
        return
    models = table["model"].to_list()
    width = 0.8 / len(ndcg)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(models) + 3.5), 4.5))
    for i, column in enumerate(ndcg):
        means = table[f"{column.key}:mean"].to_numpy()
        stds = table[f"{column.key}:std"].fill_null(0).to_numpy()
        ax.bar(
            x + (i - (len(ndcg) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=column.title,
        )
    ax.set_xticks(x, models, rotation=20, ha="right")
    ax.set_ylabel("NDCG on the test split")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write a figure atomically (temporary file, then rename) and close it."""
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
