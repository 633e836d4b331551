"""LightGBM's LambdaMART (``models/lightgbm_ranker.py``): XGBoost's space in LightGBM's names,
so the two boosted-tree rankers are tuned alike."""

from __future__ import annotations

SOURCE = (
    "The parameters LightGBM's own tuning guide names for lambdarank (docs: 'Parameters "
    "Tuning': num_leaves with max_depth, min_data_in_leaf, min_sum_hessian_in_leaf, "
    "bagging_fraction with bagging_freq, feature_fraction, lambda_l2), with ranges matched "
    "to the XGBoost space here (Gorishniy et al. 2021's, narrowed the same way): max_depth "
    "3-10, num_leaves 8-128, min_data_in_leaf 2-100, min_sum_hessian_in_leaf "
    "LogUniform[1e-5, 1e-1], bagging and feature fractions Uniform[0.5, 1], lambda_l2 "
    "{0, LogUniform[1e-5, 1]}, learning_rate LogUniform[1e-3, 1] (the model stops at 1000 "
    "rounds); the ranges are ours"
)


def suggest(trial) -> dict:
    bagging = trial.suggest_float("bagging_fraction", 0.5, 1.0)
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_sum_hessian_in_leaf": trial.suggest_float(
            "min_sum_hessian_in_leaf", 1e-5, 1e-1, log=True
        ),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 2, 100, log=True),
        "bagging_fraction": bagging,
        "bagging_freq": 1 if bagging < 1.0 else 0,  # LightGBM bags only with a frequency
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1.0, log=True),
        "lambda_l2": (
            trial.suggest_float("lambda_l2", 1e-5, 1.0, log=True)
            if trial.suggest_categorical("lambda_l2_on", [True, False])
            else 0.0
        ),
    }
