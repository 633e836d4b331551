"""One training setup for every neural ranker.

A neural ranker is a :class:`RankingNet` (a ``LightningModule`` whose ``forward(batch)``
returns a dict of task logits, each ``[groups, list]``) wrapped by a :class:`NeuralRanker`
that fits it with one shared ``Trainer`` setup:

- **loss** per task, weighted by ``task_weights``: listwise softmax cross-entropy over each
  query group by default (the target distribution is proportional to the gain ``2^rel - 1``
  for graded labels and to the label for binary ones; groups without a positive are skipped),
  or ``loss: pointwise`` (binary cross-entropy, graded labels scaled to [0, 1]), or one that
  debiases the click-type tasks for position inside the loss (``loss: ips_listwise``, inverse
  propensity scoring with the suite's estimate, or ``loss: dla``, the Dual Learning Algorithm;
  :mod:`models.unbiased_losses`), the ``relevance`` task keeping the listwise loss;
- **AdamW**, with ``lr`` and ``weight_decay``;
- **early stopping and checkpointing on validation NDCG@10** of the ranking score (the
  ``score_task`` head), restoring the best epoch's weights;
- **determinism** under the seed (``seed_everything``; the Trainer's deterministic
  algorithms, switched back to what they were after the fit);
- progress bars, and the validation curve in ``training_summary["history"]`` (the driver
  logs it to W&B).

The shared settings are :class:`TrainingSettings`; a model's ``Settings`` subclasses it
(``class Settings(TrainingSettings)``), adding its own settings and redefining a shared one
only where its default differs.

Validation NDCG@10 is computed per batch in torch for early stopping only (continuous
scores, ties broken by order); every reported metric comes from ``benchmarks/metrics.py``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch import nn

from datamodules.batches import RankingBatch
from datamodules.features import FeatureSpec
from models.base import Ranker
from models.devices import device_record, gather_everywhere
from models.unbiased_losses import (
    CLICK_TASKS,
    UNBIASED_LOSSES,
    PropensityTower,
    TowerParameterGroup,
    build_debiasing,
    check_click_tasks,
    check_propensity_clip,
    require_logged_positions,
)
from models.validation_ndcg import batch_ndcg

GRADED_TASKS = ("relevance",)
MAX_GRADE = 4.0
# The multi-task models' default weights: every task trains, relevance (the graded label the
# benchmark ranks by) counts most; behaviours a dataset does not log are dropped.
EVERY_TASK_WEIGHTS = {"relevance": 1.0, "click": 0.5, "add_to_cart": 0.5, "purchase": 0.5}


@dataclass(frozen=True)
class TrainingSettings:
    """The shared training settings of every neural ranker; a model's ``Settings`` subclasses
    this, adds its own and redefines a shared one only where its default differs."""

    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_epochs: int = 20
    patience: int = 3
    loss: Literal["listwise", "pointwise", "ips_listwise", "dla"] = "listwise"
    task_weights: dict[str, float] = field(default_factory=lambda: {"relevance": 1.0})
    score_task: str = "relevance"
    # ips_listwise and dla: propensities are clipped from below here, so no click weighs more
    # than 1 / propensity_clip (20).
    propensity_clip: float = 0.05
    # dla: the propensity tower's learning rate (Adam, one log-propensity per position). The
    # ranker's 1e-3 would move it by at most 0.001 a step, too little in a few hundred steps;
    # 0.05 is also the learning rate of DLA's reference implementation (ULTRA, with Adagrad).
    propensity_lr: float = 0.05

    def __post_init__(self):
        check_propensity_clip(self.propensity_clip)
        if self.propensity_lr <= 0:
            raise ValueError(f"propensity_lr must be positive, not {self.propensity_lr}")


# --------------------------------------------------------------------------- losses


def listwise_softmax_loss(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, graded: bool
) -> torch.Tensor:
    """Softmax cross-entropy between each group's scores and its normalised gains."""
    gains = torch.pow(2.0, labels) - 1.0 if graded else labels
    gains = torch.where(mask, gains.clamp(min=0.0), torch.zeros_like(gains))
    totals = gains.sum(dim=1, keepdim=True)
    has_positive = totals.squeeze(1) > 0
    if not has_positive.any():
        return logits.sum() * 0.0
    target = gains / totals.clamp(min=1e-12)
    log_probs = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=1)
    per_group = -(target * torch.where(mask, log_probs, torch.zeros_like(log_probs))).sum(dim=1)
    return per_group[has_positive].mean()


def pointwise_loss(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, graded: bool
) -> torch.Tensor:
    target = (labels / MAX_GRADE).clamp(0.0, 1.0) if graded else labels
    losses = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return losses[mask].mean()


LOSSES = {"listwise": listwise_softmax_loss, "pointwise": pointwise_loss}
LOSS_NAMES = (*LOSSES, *UNBIASED_LOSSES)


# --------------------------------------------------------------------------- the module


class RankingNet(L.LightningModule):
    """Base LightningModule: subclasses build layers and implement ``forward``."""

    def __init__(self, spec: FeatureSpec, config: dict[str, Any]):
        super().__init__()
        self.spec, self.config = spec, config
        self.save_hyperparameters(dict(config))  # in checkpoints and the logger's config
        weights = config["task_weights"]
        unknown = sorted(set(weights) - set(spec.tasks))
        if unknown:
            raise ValueError(
                f"task_weights name task(s) this dataset lacks: {', '.join(unknown)}; "
                f"tasks: {', '.join(spec.tasks)}"
            )
        if config["loss"] not in LOSS_NAMES:
            raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}, not {config['loss']!r}")
        self.task_weights = {t: float(w) for t, w in weights.items() if w}
        self._check_scored_tasks(config)
        check_click_tasks(config["loss"], self.task_weights, spec.tasks)
        if config["loss"] in UNBIASED_LOSSES:
            check_propensity_clip(config["propensity_clip"])
        # ips_listwise and dla: set by NeuralRanker.fit from the training log's positions.
        self.debiasing: nn.Module | None = None
        self._val_sum, self._val_count = 0.0, 0

    def _check_scored_tasks(self, config: dict[str, Any]) -> None:
        """The ranking score reads only heads that train: a head no loss reaches would score
        with its random initial weights."""
        mix = config.get("score_mix")
        scored = list(mix) if mix else [config["score_task"]]
        missing = sorted(set(scored) - set(self.spec.tasks))
        if missing:
            raise ValueError(
                f"the ranking score names task(s) this dataset lacks: {', '.join(missing)}; "
                f"tasks: {', '.join(self.spec.tasks)}"
            )
        untrained = sorted(set(scored) - set(self.task_weights))
        if untrained:
            what = "score_mix task(s)" if mix else "score_task"
            raise ValueError(
                f"{what} {', '.join(map(repr, untrained))} has no head that trains: "
                f"task_weights gives weight to {', '.join(self.task_weights) or 'nothing'}"
            )

    def forward(self, batch: RankingBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def ranking_score(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs[self.config["score_task"]]

    def training_step(self, batch: RankingBatch, batch_index: int) -> torch.Tensor:
        outputs = self(batch)
        losses = {task: self.task_loss(task, outputs[task], batch) for task in self.task_weights}
        loss = self.combine_losses(losses)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch.mask.shape[0])
        return loss

    def task_loss(self, task: str, logits: torch.Tensor, batch: RankingBatch) -> torch.Tensor:
        """One task's loss: debiased for position on click-type tasks under ``ips_listwise``
        and ``dla``, the configured plain loss (listwise for those two) otherwise."""
        labels, name = batch.labels[task], self.config["loss"]
        if name in UNBIASED_LOSSES and task in CLICK_TASKS:
            if self.debiasing is None:
                raise RuntimeError(f"loss {name!r} is set up by NeuralRanker.fit, from the log")
            return self.debiasing(logits, labels, batch.position, batch.mask)
        loss_fn = LOSSES.get(name, listwise_softmax_loss)
        return loss_fn(logits, labels, batch.mask, task in GRADED_TASKS)

    def combine_losses(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss from the per-task losses: their ``task_weights`` sum."""
        return sum(self.task_weights[task] * loss for task, loss in losses.items())

    def predict_step(self, batch: RankingBatch, batch_index: int):
        """The batch's row numbers and every head's logits (and ``"_score"``) for its items."""
        heads = self(batch)
        heads = {"_score": self.ranking_score(heads), **heads}
        return batch.rows[batch.mask], {name: logits[batch.mask] for name, logits in heads.items()}

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_count = 0.0, 0

    def validation_step(self, batch: RankingBatch, batch_index: int) -> None:
        scores = self.ranking_score(self(batch))
        total, count = batch_ndcg(scores, batch.labels["relevance"], batch.mask)
        self._val_sum += float(total)
        self._val_count += count

    def on_validation_epoch_end(self) -> None:
        # Summed over every process's query groups, so each process stops at the same epoch
        # and restores the same weights (one process: the sums themselves).
        totals = torch.tensor([self._val_sum, float(self._val_count)], dtype=torch.float64)
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(totals.to(self.device), reduce_op="sum")
        value = float(totals[0]) / max(float(totals[1]), 1.0)
        self.log("val_ndcg@10", value, prog_bar=True, sync_dist=self.trainer.world_size > 1)

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.config["lr"], weight_decay=self.config["weight_decay"]
        )


class _History(L.Callback):
    def __init__(self):
        self.epochs: list[dict] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        # Validation has run by now, so its metric is in callback_metrics.
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.epochs.append({"epoch": trainer.current_epoch, **metrics})


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's start-up chatter (accelerators, tips) is noise in a benchmark's output;
    the logger's level is given back afterwards."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _process_determinism():
    """The Trainer switches deterministic algorithms on for the process; switch them back to
    what they were once the fit is over."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class NeuralRanker(Ranker):
    """Fits ``module_class`` with the shared Trainer setup and scores with its ranking head."""

    module_class: ClassVar[type[RankingNet]]
    Settings = TrainingSettings
    uses_trainer = True
    progress: bool = True  # the driver turns progress bars off with --quiet
    # Where checkpoints are written while training (the driver: the results folder's
    # scratch/, emptied by the next run after a crash); None: the system's temporary folder.
    scratch_dir: str | None = None

    def fit(self, datamodule) -> None:
        L.seed_everything(self.seed, verbose=False)
        require_logged_positions(self.settings.loss, datamodule)
        self.module = self.build_module(datamodule)
        self.module.debiasing = build_debiasing(
            self.settings.loss, self.settings.propensity_clip, datamodule
        )
        history = _History()
        callbacks = [history]
        if isinstance(self.module.debiasing, PropensityTower):
            callbacks.append(
                TowerParameterGroup(self.module.debiasing, self.settings.propensity_lr)
            )
        if self.scratch_dir is not None:
            Path(self.scratch_dir).mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(
                dir=self.scratch_dir, prefix="checkpoints-", ignore_cleanup_errors=True
            ) as folder,
            _quiet_lightning(),
            _process_determinism(),
        ):
            checkpoint = L.pytorch.callbacks.ModelCheckpoint(
                dirpath=folder, monitor="val_ndcg@10", mode="max", save_top_k=1
            )
            stopping = L.pytorch.callbacks.EarlyStopping(
                monitor="val_ndcg@10", mode="max", patience=self.settings.patience
            )
            trainer = L.Trainer(
                **self.trainer_config.trainer_kwargs(),
                max_epochs=self.settings.max_epochs,
                callbacks=[checkpoint, stopping, *callbacks],
                deterministic=True,  # the one place deterministic algorithms are switched on
                logger=self._logger(),
                # Every 10 steps, or every step of an epoch shorter than that: a curve, always.
                log_every_n_steps=max(1, min(10, len(datamodule.train_dataloader()))),
                enable_progress_bar=self.progress,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            try:
                trainer.fit(self.module, datamodule=datamodule)
            except SystemExit:
                # Lightning answers Ctrl-C by exiting with status 1 and ignoring SIGINT from
                # then on: give the interrupt back, for the command line's message and 130.
                if not trainer.interrupted:
                    raise
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt from None
            best = torch.load(checkpoint.best_model_path, weights_only=False, map_location="cpu")
            self.module.load_state_dict(best["state_dict"])
            trainer.strategy.barrier()  # every process has read it before the folder goes
        self.training_summary = {
            "epochs": trainer.current_epoch,
            "best_val_ndcg@10": float(checkpoint.best_model_score),
            "history": history.epochs,
            "device": device_record(trainer),
        }
        if self.module.debiasing is not None:  # the propensities it weighted clicks by
            self.training_summary["debiasing"] = self.module.debiasing.summary

    def _logger(self):
        """Lightning's own W&B logger on the driver's run (curves stream while training), or
        none when W&B is off."""
        if self.wandb_run is None:
            return False
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(experiment=self.wandb_run)

    def build_module(self, datamodule) -> RankingNet:
        """The network to train; models that need more than the feature spec override this."""
        return self.module_class(datamodule.spec, self.config)

    def _outputs(self, datamodule, split: str) -> dict[str, np.ndarray]:
        """Every head's logits and the ranking score (``"_score"``), per row of ``split``,
        by ``trainer.predict`` over the split's query groups."""
        with _quiet_lightning():
            trainer = L.Trainer(
                **self.trainer_config.trainer_kwargs(),
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            batches = trainer.predict(self.module, dataloaders=datamodule.loader(split))
        # Each process scored its share of the query groups: every share, on every process.
        on_host = [(rows.cpu(), {k: v.float().cpu() for k, v in h.items()}) for rows, h in batches]
        batches = gather_everywhere(on_host)
        n_rows = datamodule.arrays(split).n_rows
        outputs: dict[str, np.ndarray] = {}
        for rows, heads in batches:
            for name, logits in heads.items():
                target = outputs.setdefault(name, np.zeros(n_rows, dtype=np.float64))
                target[rows.numpy()] = logits.double().numpy()
        return outputs

    def predict_tasks(self, datamodule, split: str) -> dict[str, np.ndarray]:
        return {k: v for k, v in self._outputs(datamodule, split).items() if k != "_score"}

    def predict(self, datamodule, split: str) -> np.ndarray:
        return self._outputs(datamodule, split)["_score"]
