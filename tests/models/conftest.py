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


def margin_over_random(datamodule: SearchLogDataModule, ranker) -> float:
    """Test NDCG@10 on true relevance of the ranker minus that of a random order."""
    test = datamodule.arrays("test")
    truth = test.labels["true_relevance"]
    model = ndcg(truth, ranker.predict(datamodule, "test"), test.group, k=10).mean
    return model - ndcg(truth, np.zeros(test.n_rows), test.group, k=10).mean
