"""TabNet (``pytorch_tabnet.TabNetRegressor``) behind the ranker contract.

Pointwise regression on one task's labels, with the categorical codes embedded by TabNet
and early stopping on the validation split's NDCG@10 over its query groups.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_tabnet.callbacks import Callback
from pytorch_tabnet.metrics import Metric
from pytorch_tabnet.tab_model import TabNetRegressor

from models.base import Ranker, register
from models.devices import single_device
from models.validation_ndcg import grouped_ndcg

# pytorch-tabnet finds metrics by name among all ``Metric`` subclasses and takes the first
# match, so every fit names its metric class uniquely: a class left over from an earlier fit
# (closing over another split's groups) can never be picked up instead.
_metric_ids = itertools.count()


@register("tabnet")
class TabNetRanker(Ranker):
    # Trains on the run's GPU where its `trainer` settings take one (one device), else the CPU.
    uses_trainer = True

    # Architecture and optimiser: the TabNet paper's (Arik & Pfister, 2021) smallest setting,
    # which is also pytorch-tabnet's default: n_d = n_a = 8, 3 steps, gamma 1.3, sparsity
    # 1e-3, Adam at 2e-2, batches of 1024 with ghost batch norm over 128, 1-d embeddings.
    # Training length: up to ``max_epochs``, stopped after ``patience`` epochs without a
    # better validation NDCG@10 (the best epoch's weights are kept).
    @dataclass(frozen=True)
    class Settings:
        target: str = "relevance"
        n_d: int = 8
        n_a: int = 8
        n_steps: int = 3
        gamma: float = 1.3
        lambda_sparse: float = 1e-3
        cat_emb_dim: int = 1
        learning_rate: float = 2e-2
        batch_size: int = 1024
        virtual_batch_size: int = 128
        max_epochs: int = 30
        patience: int = 5

    def fit(self, datamodule) -> None:
        spec = datamodule.spec
        settings = self.settings
        target = settings.target
        if target not in spec.tasks:
            raise ValueError(
                f"tabnet: target {target!r} is not a training task; tasks: {', '.join(spec.tasks)}"
            )
        train, val = datamodule.arrays("train"), datamodule.arrays("val")
        n_numeric = len(spec.numeric)

        torch.manual_seed(self.seed)
        self.model = TabNetRegressor(
            n_d=settings.n_d,
            n_a=settings.n_a,
            n_steps=settings.n_steps,
            gamma=settings.gamma,
            lambda_sparse=settings.lambda_sparse,
            cat_idxs=list(range(n_numeric, n_numeric + len(spec.categorical))),
            cat_dims=list(spec.cardinalities),
            cat_emb_dim=settings.cat_emb_dim,
            optimizer_fn=torch.optim.Adam,
            optimizer_params={"lr": settings.learning_rate},
            seed=self.seed,
            verbose=0,
            device_name=single_device(self.trainer_config),
        )
        metric = _ndcg_metric(val.group)
        # Full batches only (ghost batch norm cannot take a batch of one), so a training split
        # smaller than one batch trains on one batch of all its rows.
        batch_size = max(1, min(settings.batch_size, train.n_rows))
        # pytorch-tabnet prints its early-stopping summary and warns that it keeps the best
        # weights whatever ``verbose`` says; neither is news here.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.model.fit(
                _inputs(train),
                _targets(train.labels[target]),
                eval_set=[(_inputs(val), _targets(val.labels[target]))],
                eval_name=["val"],
                eval_metric=[metric],
                max_epochs=settings.max_epochs,
                patience=settings.patience,
                batch_size=batch_size,
                virtual_batch_size=min(settings.virtual_batch_size, batch_size),
                drop_last=True,
                compute_importance=False,
                callbacks=[_Progress(self, metric._name)] if self.wandb_run is not None else None,
            )
        history = self.model.history.history.get(f"val_{metric._name}", [])
        self.training_summary = {
            "best_epoch": int(self.model.best_epoch),
            "best_val_ndcg@10": float(self.model.best_cost),
            "epochs_run": len(history),
            "device": {"accelerator": self.model.device.type, "devices": 1},
        }

    def predict(self, datamodule, split: str) -> np.ndarray:
        scores = self.model.predict(_inputs(datamodule.arrays(split)))
        return np.asarray(scores, dtype=np.float64).reshape(-1)


class _Progress(Callback):
    """Each epoch's training loss and validation NDCG@10, to the ranker's W&B run."""

    def __init__(self, ranker: Ranker, metric: str):
        super().__init__()
        self.ranker, self.metric = ranker, metric

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        point = {"epoch": epoch, "train_loss": logs.get("loss")}
        if f"val_{self.metric}" in logs:
            point["val_ndcg@10"] = logs[f"val_{self.metric}"]
        self.ranker.log_progress({k: float(v) for k, v in point.items() if v is not None})


def _inputs(arrays) -> np.ndarray:
    """Numeric columns, then the categorical codes (TabNet embeds them by ``cat_idxs``)."""
    return np.hstack([arrays.numeric, arrays.categorical]).astype(np.float32)


def _targets(labels: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(labels, dtype=np.float32)).reshape(-1, 1)


def _ndcg_metric(group: np.ndarray) -> type[Metric]:
    """A pytorch-tabnet metric: NDCG@10 over ``group``'s queries, rows in the eval set's order."""
    group = np.asarray(group).copy()
    name = f"ndcg@10#{next(_metric_ids)}"

    class GroupNDCG(Metric):
        _name = name
        _maximize = True

        def __call__(self, y_true, y_score):
            return grouped_ndcg(y_true, y_score, group, k=10)

    return GroupNDCG
