"""XGBoost's LambdaMART (``models/xgboost_ranker.py``)."""

from __future__ import annotations

SOURCE = (
    "Gorishniy et al. 2021, 'Revisiting Deep Learning Models for Tabular Data' (NeurIPS), "
    "appendix, XGBoost's tuning space: max_depth UniformInt[3, 10], min_child_weight "
    "LogUniform[1e-8, 1e5], subsample and colsample_bytree Uniform[0.5, 1], learning_rate "
    "LogUniform[1e-5, 1], lambda {0, LogUniform[1e-8, 1e2]}, with early stopping. Narrowed: "
    "learning_rate from 1e-3 (the model stops at 1000 rounds, too few for smaller rates) and "
    "min_child_weight up to 1e3 (LambdaMART's hessians are small: on the ci preset, 16,000 "
    "training rows, 1e5 leaves every tree a single leaf); colsample_bylevel, gamma and alpha "
    "are left out (not in the model's Settings)."
)


def suggest(trial) -> dict:
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "min_child_weight": trial.suggest_float("min_child_weight", 1e-8, 1e3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1.0, log=True),
        "reg_lambda": (
            trial.suggest_float("reg_lambda", 1e-8, 1e2, log=True)
            if trial.suggest_categorical("reg_lambda_on", [True, False])
            else 0.0
        ),
    }
