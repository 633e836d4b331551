"""Data: loading and validating logs, the simulator, features, splits and batches.

The names below are imported on first use, so that ``datamodules.threads`` (read before
polars and torch start their thread pools) and the command line's help stay light.
"""

from importlib import import_module

_EXPORTS = {
    "RankingBatch": "datamodules.batches",
    "SplitArrays": "datamodules.batches",
    "FeatureConfig": "datamodules.features",
    "FeatureSpec": "datamodules.features",
    "LabelConfig": "datamodules.labels",
    "DataConfig": "datamodules.search_log",
    "SearchLogDataModule": "datamodules.search_log",
    "SplitConfig": "datamodules.splits",
    "LogValidationError": "datamodules.tables",
    "SearchLog": "datamodules.tables",
    "Truth": "datamodules.tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
