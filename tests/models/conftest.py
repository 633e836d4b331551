"""What every model test needs: one tiny simulated DataModule, and the better-than-random check."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics import ndcg
from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource


@pytest.fixture(scope="session")
def datamodule() -> SearchLogDataModule:
    """The tiny preset, set up once for all model tests (fitting never changes it)."""
    datamodule = SearchLogDataModule(SimulatorSource("tiny"))
    datamodule.setup()
    return datamodule


# Each model's bar on the tiny preset's test split under its test's settings, about 80% of
# the margin measured there (in brackets): a random order scores NDCG@10 0.698, the ideal
# 1.0, and ranking by query_title_similarity alone a margin of 0.198; a model that learns
# nothing scores a margin near 0.
QUALITY_BARS = {
    "xgboost": 0.15,  # (0.184)
    "xgboost_unbiased": 0.13,  # (0.161)
    "lightgbm": 0.17,  # (0.211)
    "lightgbm_unbiased": 0.13,  # (0.166)
    "tabnet": 0.14,  # (0.173)
    "ft_transformer": 0.16,  # (0.202)
    "dcn_v2": 0.10,  # (0.132)
    "mmoe": 0.14,  # (0.179)
    "mtl_tinybert": 0.14,  # (0.174)
}


def margin_over_random(datamodule: SearchLogDataModule, ranker) -> float:
    """Test NDCG@10 on true relevance of the ranker minus that of a random order."""
    test = datamodule.arrays("test")
    truth = test.labels["true_relevance"]
    model = ndcg(truth, ranker.predict(datamodule, "test"), test.group, k=10).mean
    return model - ndcg(truth, np.zeros(test.n_rows), test.group, k=10).mean
