"""The validation NDCG models stop and checkpoint on is the reported NDCG
(``benchmarks/metrics.py``) on tie-free scores."""

import numpy as np
import pytest
import torch

from benchmarks.metrics import ndcg
from models.validation_ndcg import batch_ndcg, grouped_ndcg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_metric_matches_benchmarks(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 25, size=200)
    group = np.repeat(np.arange(sizes.size), sizes)
    labels = rng.integers(0, 5, size=group.size).astype(np.float32)
    labels[group % 7 == 0] = 0  # some queries without a positive label are left out
    scores = rng.permutation(group.size).astype(np.float64)  # tie-free
    expected = ndcg(labels, scores, group, k=10).mean
    assert grouped_ndcg(labels, scores, group, k=10) == pytest.approx(expected, abs=1e-12)
    # As pytorch-tabnet passes them: column vectors.
    assert grouped_ndcg(labels.reshape(-1, 1), scores.reshape(-1, 1), group, k=10) == pytest.approx(
        expected, abs=1e-12
    )


def test_ndcg_metric_edge_cases():
    group = np.array([0, 0, 1, 1])
    # Perfect order, and a query with no positive label left out of the mean.
    assert grouped_ndcg([2, 0, 0, 0], [1.0, 0.0, 5.0, 4.0], group) == pytest.approx(1.0)
    # Worst order within the first query: DCG = 3 / log2(3) over ideal 3.
    assert grouped_ndcg([0, 2, 0, 0], [1.0, 0.0, 5.0, 4.0], group) == pytest.approx(1 / np.log2(3))
    # Only the top k count.
    labels = np.zeros(12)
    labels[-1] = 1
    assert grouped_ndcg(labels, -np.arange(12.0), np.zeros(12, dtype=int), k=10) == 0.0
    assert grouped_ndcg([0, 0], [1.0, 2.0], [0, 0]) == 0.0


def test_batch_ndcg_matches_the_reported_metric_on_tie_free_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (30, 8)).astype(np.float32)
    scores = rng.normal(size=(30, 8)).astype(np.float32)
    mask = np.ones((30, 8), dtype=bool)
    mask[:, 6:] = rng.random((30, 2)) < 0.5  # ragged lists
    total, count = batch_ndcg(torch.tensor(scores), torch.tensor(labels), torch.tensor(mask))
    group = np.repeat(np.arange(30), 8)[mask.ravel()]
    reference = ndcg(labels.ravel()[mask.ravel()], scores.ravel()[mask.ravel()], group, k=10)
    assert count == reference.counted
    assert float(total) / count == pytest.approx(reference.mean, abs=1e-5)


def test_ties_are_broken_by_row_order():
    # benchmarks.metrics averages over the tie (0.5 * (1 + 1/log2(3)) of the ideal), the
    # validation variant takes the rows as they come: first row first.
    assert grouped_ndcg([1, 0], [0.5, 0.5], [0, 0]) == pytest.approx(1.0)
    assert grouped_ndcg([0, 1], [0.5, 0.5], [0, 0]) == pytest.approx(1 / np.log2(3))


def test_rows_of_a_group_need_not_be_adjacent():
    labels, scores, group = [2, 0, 1, 0], [0.1, 0.9, 0.8, 0.2], [7, 3, 7, 3]
    assert grouped_ndcg(labels, scores, group) == pytest.approx(
        ndcg(np.array(labels), np.array(scores), np.array(group)).mean, abs=1e-12
    )
