"""Unbiased LambdaMART on raw clicks: XGBoost's ``rank:ndcg`` with ``lambdarank_unbiased``.

Instead of debiasing clicks into labels first (``labeling/``), this ranker trains on the
clicks themselves and lets XGBoost estimate the position bias inside the objective (Hu et
al., "Unbiased LambdaMART", WWW 2019): each request's rows are given in the order they were
shown (XGBoost reads a group's row order as its positions), and the pairwise lambdas are
reweighted by the estimated propensities of the clicked and the unclicked positions.

It needs a click log with logged positions; a judged dataset (no clicks) is refused with one
line. It stops early on the validation split's click NDCG@10, so nothing debiased by the
suite reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base import register
from models.xgboost_ranker import XGBoostRanker


@register("xgboost_unbiased")
class XGBoostUnbiasedRanker(XGBoostRanker):
    objective_options = {"lambdarank_unbiased": True}

    @dataclass(frozen=True)
    class Settings(XGBoostRanker.Settings):
        target: str = "click"  # raw clicks, not the derived labels
        # XGBoost's regularisation of the estimated position biases (the L_p norm, p = 2 by
        # default in XGBoost too).
        lambdarank_bias_norm: float = 2.0

    def training_order(self, train) -> np.ndarray:
        """Each request's rows by logged position, requests kept together."""
        return np.lexsort((train.position, train.group))
