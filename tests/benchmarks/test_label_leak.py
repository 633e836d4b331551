"""The label-leak diagnostic under every table: a fixed probe on the shared features."""

from __future__ import annotations

import numpy as np

from benchmarks.label_leak import label_leak, leak_line, probe_scores
from benchmarks.metrics import Convention, ndcg
from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource


def test_the_probe_recovers_the_derived_labels_from_the_features():
    datamodule = SearchLogDataModule(SimulatorSource("tiny"))
    datamodule.setup()
    found = label_leak(datamodule, (1, 10), "exponential", Convention())
    test = datamodule.arrays("test")
    # Every label the log makes; the simulator's truth is no training label, so not probed.
    assert set(found) == set(test.labels) - {"true_relevance"}
    assert found["relevance"][0] == "ndcg@10" and found["click"][0] == "mrr"
    # The derived labels are a function of features every model gets: the probe ranks by
    # them far better than a constant does.
    constant = ndcg(test.labels["relevance"], np.zeros(test.n_rows), test.group).mean
    assert found["relevance"][1] > constant + 0.1
    assert label_leak(datamodule, (1, 10), "exponential", Convention()) == found  # seeded
    scores = probe_scores(datamodule, "relevance")
    assert scores.shape == (test.n_rows,) and np.isfinite(scores).all()
    line = leak_line(found)
    assert line.startswith("Label-leak check:") and "relevance NDCG@10" in line
    assert leak_line({}) == ""
