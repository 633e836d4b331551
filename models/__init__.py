"""Rankers behind one contract (``models.base``); importing this registers the built-ins."""

from models import xgboost_ranker  # noqa: F401  (registers "xgboost")
from models.base import REGISTRY, Ranker, create_ranker, get_ranker, register

__all__ = ["REGISTRY", "Ranker", "create_ranker", "get_ranker", "register"]
