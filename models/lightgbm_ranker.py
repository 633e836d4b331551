"""LightGBM's LambdaMART (``lambdarank``) behind the ranker contract: a second boosted-tree
baseline beside XGBoost's, given the same budget (rounds, learning rate, depth).

Early stopping reads the suite's validation NDCG@10 (groups without a positive label left
out, ``models/validation_ndcg.py``) through a custom ``feval``: LightGBM's own ``ndcg`` counts
such groups as 1.

The model is the same at any thread count, because every sum its trees are built from is
taken by one thread in row order: histograms a column per thread (``force_col_wise``) on
dense bins (``is_enable_sparse`` off), and each leaf's sums serially (``deterministic``).
Row-wise histograms, and sparse columns' in either mode, are summed from blocks of rows, one
per thread: with ``force_row_wise`` the scores differed in their last bits between one and
two threads on the ci preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from datamodules.threads import current_threads
from models.base import Ranker, register
from models.validation_ndcg import grouped_ndcg
from models.xgboost_ranker import _integer_labels

# The settings that steer the training loop here; every other one is a LightGBM parameter of
# the same name.
LOOP_SETTINGS = ("target", "n_estimators", "early_stopping_rounds")


@register("lightgbm")
class LightGBMRanker(Ranker):
    thread_independent = True  # one thread per sum, in row order (see above)

    @dataclass(frozen=True)
    class Settings:
        target: str = "relevance"
        # The budget, as XGBoost's so that the two baselines get equal treatment: up to 1000
        # rounds at learning rate 0.1 (LightGBM's default too), stopped after 50 without a
        # better validation NDCG@10.
        n_estimators: int = 1000
        learning_rate: float = 0.1
        early_stopping_rounds: int = 50
        # Trees as deep as XGBoost's (depth 6), with the 2^6 leaves a full tree of that depth
        # has: LightGBM grows leaf by leaf, 31 leaves and no depth limit by default.
        max_depth: int = 6
        num_leaves: int = 64
        # The rest: LightGBM's defaults (no sampling, no L2 penalty, leaves of >= 20 rows).
        min_data_in_leaf: int = 20
        min_sum_hessian_in_leaf: float = 1e-3
        feature_fraction: float = 1.0
        bagging_fraction: float = 1.0
        bagging_freq: int = 0  # LightGBM bags only when this is above 0
        lambda_l2: float = 0.0

    def fit(self, datamodule) -> None:
        spec, target = datamodule.spec, self.settings.target
        if target not in spec.tasks:
            raise ValueError(
                f"{self.name}: target {target!r} is not a training task; "
                f"tasks: {', '.join(spec.tasks)}"
            )
        train, val = datamodule.arrays("train"), datamodule.arrays("val")
        categorical = list(range(len(spec.numeric), len(spec.numeric) + len(spec.categorical)))
        train_set = lgb.Dataset(
            train.tabular(),
            _integer_labels(train.labels[target]),
            group=train.group_sizes,
            categorical_feature=categorical,
            **self.dataset_fields(train),
        )
        val_set = lgb.Dataset(
            val.tabular(),
            _integer_labels(val.labels[target]),
            group=val.group_sizes,
            categorical_feature=categorical,
            reference=train_set,
        )
        params = {k: v for k, v in self.config.items() if k not in LOOP_SETTINGS}
        params.update(
            objective="lambdarank",
            metric="None",  # only the suite's NDCG@10 below
            seed=self.seed,
            deterministic=True,
            force_col_wise=True,
            is_enable_sparse=False,
            num_threads=current_threads(),
            verbosity=-1,
        )
        self.booster = lgb.train(
            params,
            train_set,
            num_boost_round=self.settings.n_estimators,
            valid_sets=[val_set],
            valid_names=["val"],
            feval=_suite_ndcg(val.labels[target], val.group),
            callbacks=[
                lgb.early_stopping(self.settings.early_stopping_rounds, verbose=False),
                self._log_iteration,
            ],
        )
        self.training_summary = {
            # 0-based, as XGBoost's: the last round kept (LightGBM counts the rounds kept).
            "best_iteration": int(self.booster.best_iteration) - 1,
            "best_val_ndcg@10": float(self.booster.best_score["val"]["ndcg@10"]),
        }

    def dataset_fields(self, train) -> dict[str, Any]:
        """Extra ``lgb.Dataset`` fields of the training split (the logged positions, in a
        variant that debiases them); the base ranker adds none."""
        return {}

    def predict(self, datamodule, split: str) -> np.ndarray:
        arrays = datamodule.arrays(split)
        scores = self.booster.predict(arrays.tabular(), num_iteration=self.booster.best_iteration)
        return np.asarray(scores, dtype=np.float64)

    def _log_iteration(self, env: lgb.callback.CallbackEnv) -> None:
        """Each boosting round's validation NDCG@10, to the ranker's W&B run as it trains."""
        results = env.evaluation_result_list
        values = {f"{data}/{metric}": value for data, metric, value, _ in results}
        self.log_progress({"iteration": env.iteration, **values})


def _suite_ndcg(labels: np.ndarray, group: np.ndarray):
    """A LightGBM ``feval``: the validation NDCG@10 every model stores, groups without a
    positive left out, as the neural models, TabNet and XGBoost do."""

    def feval(scores: np.ndarray, _data: lgb.Dataset) -> tuple[str, float, bool]:
        return "ndcg@10", grouped_ndcg(labels, scores, group, k=10), True

    return feval
