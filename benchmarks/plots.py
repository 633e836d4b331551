"""Plots a person would rather look at than read: each metric per model with its interval,
the ablation's headline per variant."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from datamodules.atomic import atomic_path  # noqa: E402


def plot_summary(table: pl.DataFrame, columns, path: Path, title: str) -> None:
    """Draw ``path`` (``_draw_summary``); a figure that fails is one warning line and no
    file, never an error: the tables, the CSV and the W&B summary do not wait on it."""
    try:
        _draw_summary(table, columns, path, title)
    except Exception as exc:  # noqa: BLE001 (a figure never takes the tables down with it)
        path.unlink(missing_ok=True)  # never a figure of older tables
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        print(f"rankbench: warning: {path} not drawn: {first_line}", file=sys.stderr)


def _draw_summary(table: pl.DataFrame, columns, path: Path, title: str) -> None:
    """One panel per metric: each model's mean with its 95% bootstrap interval over queries,
    on an axis fitted to the models (a bar from 0 would hide the gaps the tests call
    significant), and the reference rows as horizontal lines."""
    if not columns or table.is_empty():
        return
    models = table.filter(~pl.col("reference"))
    references = table.filter(pl.col("reference"))
    n_cols = min(4, len(columns))
    n_rows = -(-len(columns) // n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(3.4 * n_cols + 1.5, 0.45 * models.height * n_rows + 1.8 * n_rows),
        squeeze=False,
    )
    y = np.arange(models.height)
    for ax, column in zip(axes.ravel(), columns, strict=False):
        means = models[f"{column.key}:mean"].fill_null(np.nan).to_numpy()
        low = models[f"{column.key}:ci_low"].fill_null(np.nan).to_numpy()
        high = models[f"{column.key}:ci_high"].fill_null(np.nan).to_numpy()
        errors = np.vstack([means - low, high - means])
        ax.errorbar(
            means,
            y,
            xerr=np.clip(np.nan_to_num(errors), 0.0, None),
            fmt="o",
            capsize=3,
            color="tab:blue",
        )
        shown = [m for m in np.concatenate([low, high, means]) if np.isfinite(m)]
        if shown:
            span = max(shown) - min(shown) or 0.01
            ax.set_xlim(min(shown) - 0.15 * span, max(shown) + 0.15 * span)
        left, right = ax.get_xlim()
        for i, row in enumerate(references.iter_rows(named=True)):
            value = row[f"{column.key}:mean"]
            if value is None or not np.isfinite(value):
                continue
            # A reference off the fitted axis keeps its value in the legend, not in view.
            where = "" if left <= value <= right else (" (left)" if value < left else " (right)")
            label = f"{row['model'].removeprefix('ref: ')} {value:.3f}{where}"
            ax.axvline(value, linestyle="--", color=f"C{i + 1}", label=label)
            ax.set_xlim(left, right)
        if references.height:
            ax.legend(fontsize="x-small", loc="best")
        ax.set_yticks(y, models["model"].to_list())
        ax.invert_yaxis()
        ax.set_title(column.title, fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.ravel()[len(columns) :]:
        ax.axis("off")
    fig.suptitle(f"{title}: mean and 95% bootstrap interval over test queries")
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
