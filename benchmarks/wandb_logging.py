"""Weights & Biases: offline by default, one run per model x seed, grouped by benchmark (an
ablation: one run per variant x seed, grouped by ablation; a tuning: one run per model's
study, a point per trial, grouped by tuning folder).

A run is opened before its model trains, so its curves stream while it trains: neural
rankers log through Lightning's own ``WandbLogger`` attached to their Trainer (loss per step,
validation NDCG@10 per epoch, and W&B's system metrics), and the finished run gets the test
metrics, times and the record's identity. A record reused from an earlier command is logged
once, as a run tagged ``reused`` (a ledger in the W&B folder remembers which records were
logged), so a resumed benchmark's group holds every model of its table without repeats. The
summary run keeps one id per benchmark (later commands resume it) and uploads
``summary.md``, ``summary.csv``, ``ndcg.png`` and the run records as an artifact.

Runs are written under ``<results>/<benchmark>/wandb/`` (git-ignored); ``wandb sync`` on that
folder uploads them later. ``mode: disabled`` turns logging off.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl

from datamodules.atomic import atomic_write_text

MODES = ("offline", "online", "disabled")
LEDGER = "logged-records.json"  # record identity -> W&B run id, per benchmark folder


class WandbRuns:
    """The W&B runs of one benchmark (or ablation) folder."""

    def __init__(self, mode: str, project: str, group: str, folder: Path):
        if mode not in MODES:
            raise ValueError(f"wandb.mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode, self.project, self.group = mode, project, group
        self.folder = Path(folder)

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _init(self, name: str, job_type: str, config: dict, **kwargs):
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
            **kwargs,
        )

    # ------------------------------------------------------------------ model x seed runs

    def start(self, name: str, config: dict):
        """A run opened before training (None when logging is off); hand it to the ranker."""
        if not self.enabled:
            return None
        return self._init(name, "train", config)

    def finish(
        self, run, record: dict | None, failure: dict | None = None, remember: bool = True
    ) -> None:
        """Close ``run`` with the record's results (or the failure that ended it). A worker
        process of ``--jobs`` leaves ``remember`` to the parent (one writer of the ledger)."""
        if run is None:
            return
        if record is not None:
            run.summary.update(_summary(record))
            if remember:
                self.remember(record, run.id)
        if failure is not None:
            run.summary.update({"failed_stage": failure["stage"], "error": failure["error"]})
        run.finish(exit_code=0 if failure is None else 1)

    def log_reused(self, name: str, config: dict, record: dict) -> None:
        """A record an earlier command made, logged once as a run tagged ``reused``."""
        if not self.enabled or _identity(record) in self._ledger():
            return
        run = self._init(name, "train", config, tags=["reused"])
        for epoch in record.get("training", {}).get("history", []):
            run.log(epoch)  # the validation curve as it was recorded
        run.summary.update({**_summary(record), "reused": True})
        self.remember(record, run.id)
        run.finish()

    # ------------------------------------------------------------------ the summary

    def log_summary(self, table: pl.DataFrame, config: dict, files: list[Path]) -> None:
        """The summary table as a ``wandb.Table``, in one run per benchmark (resumed by later
        commands), with the summary files and run records as an artifact."""
        if not self.enabled:
            return
        import wandb

        stable = hashlib.sha256(f"{self.project}/{self.folder.resolve()}".encode()).hexdigest()
        run = self._init("summary", "summary", config, id=f"summary-{stable[:16]}", resume="allow")
        clean = table.with_columns(pl.col(pl.Float64).fill_nan(None))
        run.log({"summary": wandb.Table(columns=clean.columns, data=clean.rows())})
        artifact = wandb.Artifact(f"{_safe(self.group)}-results", type="results")
        for path in files:
            if path.is_dir():
                artifact.add_dir(str(path), name=path.name)
            elif path.is_file():
                artifact.add_file(str(path))
        run.log_artifact(artifact)
        run.finish()

    # ------------------------------------------------------------------ tuning studies

    def study(self, model: str, config: dict):
        """A tuning study's run, opened before its first new trial (None when logging is
        off). Its id comes from the folder and the model, so a resumed study logs on into
        the same run, one step per trial number."""
        if not self.enabled:
            return None
        stable = hashlib.sha256(
            f"{self.project}/{self.folder.resolve()}/{model}".encode()
        ).hexdigest()
        return self._init(f"tune-{model}", "tune", config, id=f"tune-{stable[:16]}", resume="allow")

    def log_trial(self, run, trial, best_value: float | None) -> None:
        """One trial: its number, its time, its parameters as the sampler drew them, its
        validation NDCG@10 (none where the model failed) and the study's best so far."""
        if run is None:
            return
        point = {"trial": trial.number, "trial_seconds": trial.duration.total_seconds()}
        point |= {f"params/{name}": value for name, value in trial.params.items()}
        if trial.value is not None:
            point["value"] = trial.value
        if best_value is not None:
            point["best_value"] = best_value
        run.log(point, step=trial.number)

    def finish_study(self, run, best: dict | None) -> None:
        """Close a study's run with its best trial and settings."""
        if run is None:
            return
        if best is not None:
            keep = ("value", "trial", "trials_done", "wall_time_s", "stopped_by")
            run.summary.update({f"best/{key}": best[key] for key in keep})
            run.summary.update({f"best/settings/{k}": v for k, v in best["settings"].items()})
        run.finish()

    # ------------------------------------------------------------------ the ledger

    def _ledger(self) -> dict:
        try:
            return json.loads((self.folder / "wandb" / LEDGER).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def remember(self, record: dict, run_id: str) -> None:
        """Note that ``record`` is logged, as W&B run ``run_id``: not logged again as reused."""
        ledger = self._ledger()
        ledger[_identity(record)] = run_id
        atomic_write_text(self.folder / "wandb" / LEDGER, json.dumps(ledger, indent=1))


def _identity(record: dict) -> str:
    return f"{record['run_id']}:{record.get('finished_at')}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def _summary(record: dict) -> dict:
    device = record.get("training", {}).get("device") or {}  # neural models: where they trained
    return {
        **flatten_metrics(record["metrics"]),
        "fit_seconds": record["wall_time_s"]["fit"],
        "peak_memory_mb": record["peak_memory_mb"],
        "split_hash": record["split_hash"],
        "dataset_fingerprint": record["dataset_fingerprint"],
        **{f"device/{key}": value for key, value in device.items()},
    }


def wandb_config(
    model: str, seed: int, settings: dict, environment: dict | None, variant: str | None = None
) -> dict:
    """What a W&B run's config shows: model, seed (and ablation variant), the run's settings
    (its record's ``config``) and where it ran."""
    named = {"model": model, "seed": seed, **({"variant": variant} if variant else {})}
    return {**named, **settings, "environment": environment}


def flatten_metrics(metrics: dict) -> dict:
    """``{label: {metric: {"mean": x}}}`` -> ``{"label/metric": x}``."""
    return {
        f"{label}/{name}": values["mean"]
        for label, by_name in metrics.items()
        for name, values in by_name.items()
    }
