"""XGBoost's LambdaMART (``XGBRanker``, ``rank:ndcg``) behind the ranker contract.

Given a Dask client (``dask_client``, set by the driver from ``--dask``), it trains on the
cluster with the same settings and early stopping (``models/xgboost_dask.py``), and its
record's ``training.dask`` says on how many workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xgboost as xgb

from datamodules.threads import current_threads
from models.base import Ranker, register
from models.validation_ndcg import grouped_ndcg


@register("xgboost")
class XGBoostRanker(Ranker):
    thread_independent = True  # hist trees: the same model at any n_jobs
    dask_client = None  # a distributed.Client to train on; None: in this process
    trains_on_dask = True  # with --dask its trees are another run's (benchmarks/reuse.py)

    # XGBoost's defaults (learning rate 0.3 lowered to 0.1 for a smoother early stop), with
    # up to 1000 rounds stopped on the validation split's NDCG@10.
    @dataclass(frozen=True)
    class Settings:
        target: str = "relevance"
        n_estimators: int = 1000
        learning_rate: float = 0.1
        max_depth: int = 6
        min_child_weight: float = 1.0
        subsample: float = 1.0
        colsample_bytree: float = 1.0
        reg_lambda: float = 1.0
        early_stopping_rounds: int = 50
        n_jobs: int | None = None  # None: the run's thread setting (`threads`)

    def fit(self, datamodule) -> None:
        spec = datamodule.spec
        train, val = datamodule.arrays("train"), datamodule.arrays("val")
        target = self.settings.target
        if target not in spec.tasks:
            raise ValueError(
                f"{self.name}: target {target!r} is not a training task; "
                f"tasks: {', '.join(spec.tasks)}"
            )
        n_jobs = self.settings.n_jobs or current_threads()
        # The other settings are XGBRanker's own parameters, by name.
        params = {k: v for k, v in self.config.items() if k not in ("target", "n_jobs")}
        params.update(self.objective_options)
        settings = dict(
            objective="rank:ndcg",
            # Groups without a positive count 0 ("-"), not 1 as in plain ndcg@10: either is a
            # constant shift of the suite's mean over the other groups, so the stopping round
            # is the same; the stored value below is the suite's own.
            eval_metric="ndcg@10-",
            tree_method="hist",
            enable_categorical=True,
            feature_types=["q"] * len(spec.numeric) + ["c"] * len(spec.categorical),
            random_state=self.seed,
            **params,
        )
        rows = self.training_order(train)
        train_rows = (
            train.tabular()[rows],
            _integer_labels(train.labels[target][rows]),
            train.group[rows],
        )
        val_rows = (val.tabular(), _integer_labels(val.labels[target]), val.group)
        if self.dask_client is not None:
            from models.xgboost_dask import fit_on_dask

            # No progress callback: it would run on the workers, away from the W&B run.
            self.model = fit_on_dask(self.dask_client, settings, train_rows, val_rows, n_jobs)
        else:
            self.model = self._fit_here(settings, train_rows, val_rows, n_jobs)
        # The validation NDCG@10 every model stores: groups without a positive left out, as
        # the neural models and TabNet do (models/validation_ndcg.py), so they compare.
        best_val = grouped_ndcg(
            val.labels[target], self.model.predict(val.tabular()), val.group, k=10
        )
        self.training_summary = {
            "best_iteration": int(self.model.best_iteration),
            "best_val_ndcg@10": best_val,
            "best_val_xgboost_ndcg@10-": float(self.model.best_score),
        }
        if self.dask_client is not None:
            workers = len(self.dask_client.scheduler_info()["workers"])
            self.training_summary["dask"] = {"workers": workers}

    def _fit_here(self, settings: dict, train_rows, val_rows, n_jobs: int) -> xgb.XGBRanker:
        """``XGBRanker(**settings)`` fitted in this process, its rounds streamed to W&B."""
        model = xgb.XGBRanker(
            n_jobs=n_jobs,
            callbacks=[_Progress(self)] if self.wandb_run is not None else None,
            **settings,
        )
        (X, y, qid), (X_val, y_val, qid_val) = train_rows, val_rows
        model.fit(X, y, qid=qid, eval_set=[(X_val, y_val)], eval_qid=[qid_val], verbose=False)
        return model

    # XGBRanker options a variant adds (position debiasing); the base ranker adds none.
    objective_options: ClassVar[dict] = {}

    def training_order(self, train) -> np.ndarray:
        """The order of the training rows XGBoost sees (the split's own here; a variant that
        reads the order as the shown order sorts each request by position)."""
        return np.arange(train.n_rows)

    def predict(self, datamodule, split: str) -> np.ndarray:
        arrays = datamodule.arrays(split)
        return self.model.predict(arrays.tabular()).astype(np.float64)


class _Progress(xgb.callback.TrainingCallback):
    """Each boosting round's validation NDCG@10, to the ranker's W&B run as it trains."""

    def __init__(self, ranker: Ranker):
        super().__init__()
        self.ranker = ranker

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        for data, metrics in evals_log.items():
            self.ranker.log_progress(
                {"iteration": epoch, **{f"{data}/{m}": v[-1] for m, v in metrics.items()}}
            )
        return False  # never stops training; early stopping is XGBoost's own


def _integer_labels(labels: np.ndarray) -> np.ndarray:
    # rank:ndcg takes graded integer relevance.
    return np.rint(np.nan_to_num(labels)).astype(np.int32)
