"""Weights & Biases logging: offline by default, one run per model x seed, grouped by benchmark
(an ablation: one run per variant x seed, grouped by ablation).

Runs are written under ``<results>/<benchmark>/wandb/`` (git-ignored); ``wandb sync`` on that
folder uploads them later. ``mode: disabled`` turns logging off.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

MODES = ("offline", "online", "disabled")


class WandbLogger:
    def __init__(self, mode: str, project: str, group: str, folder: Path):
        if mode not in MODES:
            raise ValueError(f"wandb.mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode, self.project, self.group = mode, project, group
        self.folder = Path(folder)

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _init(self, name: str, job_type: str, config: dict):
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        return wandb.init(
            project=self.project,
            group=self.group,
            name=name,
            job_type=job_type,
            config=config,
            dir=str(self.folder),
            mode=self.mode,
            reinit="finish_previous",
        )

    def log_run(
        self, record: dict, name: str | None = None, extra_config: dict | None = None
    ) -> str | None:
        """One W&B run for a finished model x seed run; returns the run's local folder.

        ``name`` replaces the run id as the W&B run name, and ``extra_config`` adds settings
        (an ablation names its runs by variant and records which variant ran)."""
        if not self.enabled:
            return None
        run = self._init(
            name or record["run_id"],
            "train",
            {
                "model": record["model"],
                "seed": record["seed"],
                "environment": record.get("environment", {}),
                **record["config"],
                **(extra_config or {}),
            },
        )
        for epoch in record.get("training", {}).get("history", []):
            run.log(epoch)  # the validation curve of neural rankers
        run.summary.update(flatten_metrics(record["metrics"]))
        run.summary.update(
            {
                "fit_seconds": record["wall_time_s"]["fit"],
                "peak_memory_mb": record["peak_memory_mb"],
                "split_hash": record["split_hash"],
                "dataset_fingerprint": record["dataset_fingerprint"],
            }
        )
        folder = run.dir
        run.finish()
        return folder

    def log_summary(self, table: pl.DataFrame, config: dict) -> None:
        """The benchmark's summary table as a ``wandb.Table`` in a run of its own."""
        if not self.enabled:
            return
        import wandb

        run = self._init("summary", "summary", config)
        clean = table.with_columns(pl.col(pl.Float64).fill_nan(None))
        run.log({"summary": wandb.Table(columns=clean.columns, data=clean.rows())})
        run.finish()


def flatten_metrics(metrics: dict) -> dict:
    """``{label: {metric: {"mean": x}}}`` -> ``{"label/metric": x}``."""
    return {
        f"{label}/{name}": values["mean"]
        for label, by_name in metrics.items()
        for name, values in by_name.items()
    }
