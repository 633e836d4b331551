"""Rankers behind one contract (``models.base``); importing this registers the built-ins."""

from models import (  # noqa: F401  (importing a model module registers its ranker)
    dcn_v2,
    ft_transformer,
    lightgbm_ranker,
    lightgbm_unbiased,
    mmoe,
    mtl_tinybert,
    tabnet_ranker,
    xgboost_ranker,
    xgboost_unbiased,
)
from models.base import REGISTRY, Ranker, create_ranker, get_ranker, register

__all__ = ["REGISTRY", "Ranker", "create_ranker", "get_ranker", "register"]
