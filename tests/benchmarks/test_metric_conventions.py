"""Metric conventions: hand-computed cases of each rule, the LETOR 4.0 script's rules written
out again independently, and trec_eval (through ir-measures) on tie-free scores."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from ir_measures import RR, Qrel, ScoredDoc, nDCG

from benchmarks.config import load_spec
from benchmarks.metric_conventions import CONVENTIONS, Convention
from benchmarks.metrics import evaluate_binary, mrr, ndcg

LETOR4 = CONVENTIONS["letor4"]
LOG2_3 = np.log2(3.0)


def test_ties_in_file_order_rank_the_first_row_first():
    # Average: the tie's two orders, (1 + 1/log2 3) / 2 of the ideal 1. File order: as given.
    assert ndcg([1, 0], [0.5, 0.5], [0, 0]).mean == pytest.approx((1 + 1 / LOG2_3) / 2)
    file_order = Convention(ties="file_order")
    assert ndcg([1, 0], [0.5, 0.5], [0, 0], convention=file_order).mean == 1.0
    assert ndcg([0, 1], [0.5, 0.5], [0, 0], convention=file_order).mean == 1 / LOG2_3
    assert mrr([0, 1, 1], [2.0, 2.0, 2.0], [0, 0, 0], convention=file_order).mean == 0.5
    # Average: the first positive is at rank 1 with probability 2/3, else at rank 2.
    assert mrr([0, 1, 1], [2.0, 2.0, 2.0], [0, 0, 0]).mean == pytest.approx(2 / 3 + 1 / 3 / 2)


@pytest.mark.parametrize(("empty", "expected"), [("skip", 1.0), ("zero", 0.5), ("one", 1.0)])
def test_queries_without_a_positive(empty, expected):
    labels, scores, group = [1, 0, 0, 0], [2.0, 1.0, 2.0, 1.0], [0, 0, 1, 1]
    convention = Convention(empty_queries=empty)
    result = ndcg(labels, scores, group, convention=convention)
    assert result.mean == expected and result.left_out == (1 if empty == "skip" else 0)
    binary = evaluate_binary(labels, scores, group, convention)
    assert binary["mrr"].mean == expected
    assert np.isnan(binary["group_auc"].per_query[1])  # AUC needs both classes, always


def test_letor4_discount_leaves_ranks_one_and_two_undiscounted():
    # Gains 0, 1, 3 at ranks 1-3: LETOR 4.0 DCG@3 = 0 + 1 + 3 / log2(3); ideal 3 + 1 + 0.
    result = ndcg([0, 1, 2], [3.0, 2.0, 1.0], [0, 0, 0], k=3, convention=LETOR4)
    assert result.mean == pytest.approx((1 + 3 / LOG2_3) / 4)
    standard = ndcg([0, 1, 2], [3.0, 2.0, 1.0], [0, 0, 0], k=3)
    assert standard.mean == pytest.approx((1 / LOG2_3 + 3 / 2) / (3 + 1 / LOG2_3))


def test_letor4_scores_a_query_shorter_than_k_zero():
    labels, scores, group = [1, 0, 2, 0, 1, 0], [1.0, 0.0, 5.0, 4.0, 3.0, 2.0], [0, 0, 1, 1, 1, 1]
    per_query = ndcg(labels, scores, group, k=3, convention=LETOR4).per_query
    assert per_query[0] == 0.0  # 2 documents, k = 3
    assert per_query[1] == pytest.approx((3 + 0 + 1 / LOG2_3) / (3 + 1))


def _letor4_script(labels, scores, group, k: int) -> float:
    """The LETOR 4.0 script's NDCG@k, written out per query as its rules read (the mean over
    every query, relevant documents or not)."""
    values = []
    for g in dict.fromkeys(group):
        rows = [i for i, q in enumerate(group) if q == g]
        ranked = sorted(rows, key=lambda i: -scores[i])  # Python's sort is stable: file order
        if len(rows) < k:
            values.append(0.0)
            continue

        def dcg(order):
            total = 0.0
            for p, i in enumerate(order[:k]):
                gain = 2.0 ** labels[i] - 1.0
                total += gain if p < 2 else gain / np.log2(p + 1)
            return total

        best = dcg(sorted(rows, key=lambda i: -labels[i]))
        values.append(dcg(ranked) / best if best > 0 else 0.0)
    return float(np.mean(values))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_letor4_reproduces_the_scripts_rules(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, size=60)
    group = np.repeat(np.arange(sizes.size), sizes)
    labels = rng.integers(0, 3, size=group.size).astype(float)
    labels[group % 9 == 0] = 0  # queries without a relevant document
    scores = rng.integers(0, 4, size=group.size).astype(float)  # many ties
    for k in (1, 3, 5, 10):
        got = ndcg(labels, scores, group, k=k, convention=LETOR4).mean
        assert got == pytest.approx(_letor4_script(labels, scores, group, k), abs=1e-12)


def _trec(labels, scores, group):
    qrels = [
        Qrel(str(q), str(i), int(r)) for i, (q, r) in enumerate(zip(group, labels, strict=True))
    ]
    run = [
        ScoredDoc(str(q), str(i), float(s))
        for i, (q, s) in enumerate(zip(group, scores, strict=True))
    ]
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1])
def test_against_trec_eval_on_tie_free_scores(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 25, size=80)
    group = np.repeat(np.arange(sizes.size), sizes)
    labels = rng.integers(0, 5, size=group.size)
    labels[group % 5 == 0] = 0
    scores = rng.permutation(group.size).astype(float)
    qrels, run = _trec(labels, scores, group)
    gains = {r: 2**r - 1 for r in range(5)}
    # trec_eval scores a query without a relevant document 0: the "zero" convention.
    zero = Convention(empty_queries="zero")
    for k in (1, 5, 10):
        # One measure per call: trec_eval takes one gain table a run.
        for measure, gain in ((nDCG @ k, "linear"), (nDCG(gains=gains) @ k, "exponential")):
            expected = ir_measures.calc_aggregate([measure], qrels, run)[measure]
            got = ndcg(labels, scores, group, k=k, gain=gain, convention=zero).mean
            assert got == pytest.approx(expected, abs=1e-12)
    binary = np.minimum(labels, 1)
    expected_rr = ir_measures.calc_aggregate([RR], *_trec(binary, scores, group))[RR]
    assert mrr(binary, scores, group, convention=zero).mean == pytest.approx(expected_rr)


def test_the_spec_names_a_convention_and_overrides_parts_of_it():
    spec = load_spec(assignments=["metrics.convention=letor4", "metrics.ties=average"])
    assert spec.metrics.scoring() == Convention("zero", "average", "letor4", "zero")
    assert load_spec().metrics.scoring() == Convention()
    with pytest.raises(ValueError, match="metrics.convention must be one of rankbench, letor4"):
        load_spec(assignments=["metrics.convention=trec"])
