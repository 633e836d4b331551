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


def plot_ablation(
    table: pl.DataFrame, headline, path: Path, title: str, reference: str = "full"
) -> None:
    """The headline NDCG per variant (mean ± std over seeds), ``full``'s as a line.

    Points rather than bars: the axis is zoomed to the variants' range, where bars starting
    above zero would exaggerate the differences."""
    variants = table["variant"].to_list()
    means = table[f"{headline.key}:mean"].to_numpy()
    stds = table[f"{headline.key}:std"].fill_null(0).to_numpy()
    x = np.arange(len(variants))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(variants) + 2.5), 4.5))
    ax.errorbar(
        x, means, yerr=stds, fmt="o", capsize=4, color="tab:blue", label="mean ± std over seeds"
    )
    reference = means[variants.index(reference)]
    ax.axhline(reference, color="tab:red", linestyle="--", label=reference)
    ax.set_xticks(x, variants, rotation=25, ha="right")
    ax.set_xlim(-0.5, len(variants) - 0.5)
    ax.set_ylabel(f"{headline.title} on the test split")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)
