"""LightGBM on raw clicks with its position-bias treatment (``models/lightgbm_unbiased.py``):
LightGBM's space and the regularisation of the position factors."""

from __future__ import annotations

# The module itself, not the package: a study's identity hashes the files a space imports.
from benchmarks.search_spaces.lightgbm import SOURCE as LIGHTGBM_SOURCE
from benchmarks.search_spaces.lightgbm import suggest as suggest_lightgbm

SOURCE = (
    f"{LIGHTGBM_SOURCE} Plus lambdarank_position_bias_regularization, LightGBM's L2 penalty "
    "on the learned position factors, in {0, 0.1, 1} around its default 0 (our choice)."
)


def suggest(trial) -> dict:
    penalty = trial.suggest_categorical("lambdarank_position_bias_regularization", [0.0, 0.1, 1.0])
    return {**suggest_lightgbm(trial), "lambdarank_position_bias_regularization": penalty}
