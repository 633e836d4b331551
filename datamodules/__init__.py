"""Data: loading and validating logs, the simulator, features, splits and batches."""

from datamodules.batches import RankingBatch, SplitArrays
from datamodules.features import FeatureConfig, FeatureSpec
from datamodules.labels import LabelConfig
from datamodules.search_log import DataConfig, SearchLogDataModule
from datamodules.splits import SplitConfig
from datamodules.tables import LogValidationError, SearchLog, Truth

__all__ = [
    "DataConfig",
    "FeatureConfig",
    "FeatureSpec",
    "LabelConfig",
    "LogValidationError",
    "RankingBatch",
    "SearchLog",
    "SearchLogDataModule",
    "SplitArrays",
    "SplitConfig",
    "Truth",
]
