"""Unbiased LambdaMART (``models/xgboost_unbiased.py``): XGBoost's space and the norm of the
position-bias regulariser."""

from __future__ import annotations

# The module itself, not the package: a study's identity hashes the files a space imports.
from benchmarks.search_spaces.xgboost import SOURCE as XGBOOST_SOURCE
from benchmarks.search_spaces.xgboost import suggest as suggest_xgboost

SOURCE = (
    f"{XGBOOST_SOURCE} Plus lambdarank_bias_norm, the p of the L_p regulariser on the "
    "estimated position biases (Hu et al. 2019, 'Unbiased LambdaMART', WWW), in {0.5, 1, 2} "
    "around XGBoost's default 2 (our choice of values)."
)


def suggest(trial) -> dict:
    norm = trial.suggest_categorical("lambdarank_bias_norm", [0.5, 1.0, 2.0])
    return {**suggest_xgboost(trial), "lambdarank_bias_norm": norm}
