"""Tests for benchmarks.metrics: the spec cases, sklearn/torchmetrics parity and properties."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score, roc_auc_score
from torchmetrics.retrieval import RetrievalMRR, RetrievalNormalizedDCG

from benchmarks.metrics import (
    GroupMetric,
    auc,
    evaluate_binary,
    evaluate_ranking,
    group_auc,
    mrr,
    ndcg,
)

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "spec" / "ndcg_cases.json"
FAST = settings(max_examples=60, deadline=None)
TOL = 1e-9


# ----------------------------------------------------------------------------------------------
# Helpers


def flatten(queries, ids=None):
    """(labels, scores) per query -> row arrays; group id = ids[i] (default i) for query i."""
    ids = range(len(queries)) if ids is None else ids
    labels = np.array([lab for q in queries for lab, _ in q], dtype=np.float64)
    scores = np.array([s for q in queries for _, s in q], dtype=np.float64)
    groups = np.array([g for g, q in zip(ids, queries, strict=True) for _ in q], dtype=np.int64)
    return labels, scores, groups


def shuffled(seed, *arrays):
    perm = np.random.default_rng(seed).permutation(arrays[0].size)
    return tuple(a[perm] for a in arrays)


def tie_orders(scores):
    """Every order of item indices consistent with scores descending (ties in any order)."""
    for perm in itertools.permutations(range(len(scores))):
        if all(scores[a] >= scores[b] for a, b in itertools.pairwise(perm)):
            yield perm


def brute_dcg(gains, k):
    return sum(g / math.log2(r + 2) for r, g in enumerate(gains[:k]))


def brute_ndcg(labels, scores, k, gain):
    """Mean DCG@k over all tie orders / ideal DCG@k; None without a positive label."""
    to_gain = (lambda x: 2.0**x - 1.0) if gain == "exponential" else (lambda x: float(x))
    if max(labels) <= 0:
        return None
    k = len(labels) if k is None else k
    dcgs = [brute_dcg([to_gain(labels[i]) for i in p], k) for p in tie_orders(scores)]
    return (sum(dcgs) / len(dcgs)) / brute_dcg(sorted(map(to_gain, labels), reverse=True), k)


def brute_mrr(labels, scores):
    if max(labels) <= 0:
        return None
    rrs = [1.0 / next(r + 1 for r, i in enumerate(p) if labels[i] > 0) for p in tie_orders(scores)]
    return sum(rrs) / len(rrs)


def assert_metric_close(a: GroupMetric, b: GroupMetric, tol=1e-12):
    np.testing.assert_array_equal(a.group_ids, b.group_ids)
    np.testing.assert_allclose(a.per_query, b.per_query, rtol=tol, atol=tol, equal_nan=True)


def keep_only(values):
    """Per-query values of the queries that count (drops NaN)."""
    return values[~np.isnan(values)]


# Few distinct scores so that ties are common; labels include a non-integer so that both ideal
# order paths (histogram for integer labels, sort otherwise) are exercised.
SCORE = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
LABEL = st.sampled_from([0, 0, 1, 2, 3, 0.5])
QUERY = st.lists(st.tuples(LABEL, SCORE), min_size=1, max_size=6)
DATA = st.lists(QUERY, min_size=1, max_size=5)
SEED = st.integers(0, 2**32 - 1)
K = st.sampled_from([1, 2, 3, 5, None])
GAIN = st.sampled_from(["exponential", "linear"])


def random_groups(rng, n_queries=60, max_len=15, tie_free=True, integer_labels=True):
    sizes = rng.integers(2, max_len + 1, n_queries)  # sklearn's ndcg_score needs >= 2 items
    groups = np.repeat(np.arange(n_queries), sizes)
    labels = rng.choice(5, size=groups.size, p=[0.5, 0.2, 0.15, 0.1, 0.05]).astype(np.float64)
    if not integer_labels:
        labels *= 0.37
    labels[groups % 7 == 0] = 0.0  # some queries without positives
    scores = rng.random(groups.size)
    if not tie_free:
        scores = np.round(scores, 1)
    return labels, scores, groups


# ----------------------------------------------------------------------------------------------
# Spec cases (shared/spec/ndcg_cases.json)


def _spec_cases():
    if not SPEC_PATH.is_file():
        reason = f"spec cases not found at {SPEC_PATH} (expected ../shared/spec from the repo)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    cases = json.loads(SPEC_PATH.read_text())["cases"]
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.mark.parametrize("case", _spec_cases())
@pytest.mark.parametrize("arrangement", ["as_given", "shuffled_rows"])
def test_spec_case(case, arrangement):
    queries = [list(zip(q["labels"], q["scores"], strict=True)) for q in case["queries"]]
    # Increasing but sparse ids keep the expected per-query order.
    labels, scores, groups = flatten(queries, ids=[10 * i + 3 for i in range(len(queries))])
    if arrangement == "shuffled_rows":
        labels, scores, groups = shuffled(1, labels, scores, groups)
    got = ndcg(labels, scores, groups, k=case["k"], gain=case["gain"])
    expected = np.array([np.nan if v is None else v for v in case["per_query"]])
    np.testing.assert_allclose(got.per_query, expected, rtol=0, atol=TOL, equal_nan=True)
    assert got.mean == pytest.approx(case["mean"], abs=TOL)
    assert got.left_out == case["left_out"]
    assert got.counted == len(expected) - case["left_out"]
    assert got.name == f"ndcg@{case['k']}"


# ----------------------------------------------------------------------------------------------
# Parity with sklearn and torchmetrics


@pytest.mark.parametrize("tie_free", [True, False], ids=["tie_free", "ties"])
@pytest.mark.parametrize("gain", ["exponential", "linear"])
@pytest.mark.parametrize("k", [1, 3, 5, 10, None])
def test_ndcg_matches_sklearn(k, gain, tie_free):
    # sklearn's ndcg_score averages ties the same way (ignore_ties=False), so ties are compared
    # too. It uses the labels as gains: pass 2**rel - 1 for the exponential gain.
    rng = np.random.default_rng(0)
    labels, scores, groups = random_groups(rng, tie_free=tie_free)
    labels, scores, groups = shuffled(2, labels, scores, groups)
    got = ndcg(labels, scores, groups, k=k, gain=gain)
    for i, g in enumerate(got.group_ids):
        rows = groups == g
        if labels[rows].max() == 0:  # sklearn scores these 0; the spec leaves them out
            assert np.isnan(got.per_query[i])
            continue
        y_true = 2.0 ** labels[rows] - 1.0 if gain == "exponential" else labels[rows]
        expected = ndcg_score(y_true[None], scores[rows][None], k=k)
        assert got.per_query[i] == pytest.approx(expected, abs=1e-12)


def test_ideal_order_paths_agree():
    # Linear NDCG is scale-invariant; scaling by 0.37 makes labels non-integer, which switches
    # the ideal order from the per-query histogram to the sort.
    labels, scores, groups = random_groups(np.random.default_rng(3), tie_free=False)
    for k in (1, 3, None):
        a = ndcg(labels, scores, groups, k=k, gain="linear")
        b = ndcg(labels * 0.37, scores, groups, k=k, gain="linear")
        assert_metric_close(a, b)


def _per_query_torchmetrics(metric_cls, labels, scores, groups, **kwargs):
    metric = metric_cls(
        empty_target_action="skip", aggregation=lambda values, dim=None: values, **kwargs
    )
    metric.update(
        torch.from_numpy(scores),
        torch.from_numpy(labels.astype(np.int64)),
        indexes=torch.from_numpy(groups.astype(np.int64)),
    )
    return metric.compute().double().numpy()  # sorted query order, empty queries skipped


@pytest.mark.parametrize("k", [1, 3, 10, None])
def test_ndcg_matches_torchmetrics(k):
    # torchmetrics' NDCG uses the labels as gains (linear) and computes ties in float32.
    labels, scores, groups = random_groups(np.random.default_rng(4))
    labels, scores, groups = shuffled(5, labels, scores, groups)
    got = ndcg(labels, scores, groups, k=k, gain="linear")
    expected = _per_query_torchmetrics(RetrievalNormalizedDCG, labels, scores, groups, top_k=k)
    np.testing.assert_allclose(keep_only(got.per_query), expected, rtol=0, atol=1e-6)


def test_mrr_matches_torchmetrics():
    # torchmetrics' MRR ignores positives with a score <= 0, so scores are kept positive; it
    # returns float32 reciprocal ranks.
    labels, scores, groups = random_groups(np.random.default_rng(6))
    labels = (labels > 1).astype(np.float64)
    scores = scores + 0.01
    labels, scores, groups = shuffled(7, labels, scores, groups)
    got = mrr(labels, scores, groups)
    expected = _per_query_torchmetrics(RetrievalMRR, labels, scores, groups)
    np.testing.assert_allclose(keep_only(got.per_query), expected, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Properties


@FAST
@given(DATA, SEED, K, GAIN)
def test_constant_scores_cannot_inherit_row_order(queries, seed, k, gain):
    labels, _, groups = flatten(queries)
    scores = np.full(labels.size, 0.5)
    base = ndcg(labels, scores, groups, k=k, gain=gain)
    for s in (seed, seed + 1):
        assert_metric_close(base, ndcg(*shuffled(s, labels, scores, groups), k=k, gain=gain))
    flipped = ndcg(labels[::-1], scores, groups[::-1], k=k, gain=gain)
    assert_metric_close(base, flipped)


@FAST
@given(DATA, SEED)
def test_permuting_rows_changes_no_metric(queries, seed):
    ids = np.arange(len(queries)) * 97 - 50  # sparse, negative ids too
    labels, scores, groups = flatten(queries, ids=ids)
    perm = shuffled(seed, labels, scores, groups)
    for gain in ("exponential", "linear"):
        a = evaluate_ranking(labels, scores, groups, ks=(1, 3, None), gain=gain)
        b = evaluate_ranking(*perm, ks=(1, 3, None), gain=gain)
        for name in a:
            assert_metric_close(a[name], b[name])
    a, b = evaluate_binary(labels, scores, groups), evaluate_binary(*perm)
    assert_metric_close(a["mrr"], b["mrr"])
    assert_metric_close(a["group_auc"], b["group_auc"])
    np.testing.assert_allclose(a["auc"], b["auc"], rtol=1e-12, equal_nan=True)


@FAST
@given(DATA, K, GAIN)
def test_ideal_scores_give_one_and_ndcg_in_unit_interval(queries, k, gain):
    labels, scores, groups = flatten(queries)
    ideal = ndcg(labels, labels, groups, k=k, gain=gain)
    np.testing.assert_allclose(keep_only(ideal.per_query), 1.0, rtol=0, atol=1e-12)
    values = keep_only(ndcg(labels, scores, groups, k=k, gain=gain).per_query)
    assert ((values >= -1e-12) & (values <= 1 + 1e-12)).all()


@FAST
@given(DATA, K, GAIN)
def test_ndcg_tie_average_matches_brute_force(queries, k, gain):
    got = ndcg(*flatten(queries), k=k, gain=gain)
    for value, q in zip(got.per_query, queries, strict=True):
        expected = brute_ndcg([lab for lab, _ in q], [s for _, s in q], k, gain)
        if expected is None:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(expected, abs=TOL)


@FAST
@given(DATA)
def test_mrr_matches_brute_force(queries):
    got = mrr(*flatten(queries))
    for value, q in zip(got.per_query, queries, strict=True):
        expected = brute_mrr([lab for lab, _ in q], [s for _, s in q])
        if expected is None:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(expected, abs=TOL)


@FAST
@given(DATA, SEED)
def test_queries_without_positives_are_left_out(queries, seed):
    labels, scores, groups = flatten(queries)
    no_pos = np.array([max(lab for lab, _ in q) == 0 for q in queries])
    one_class = np.array([len({lab > 0 for lab, _ in q}) == 1 for q in queries])
    metrics = [ndcg(labels, scores, groups), mrr(labels, scores, groups)]
    for m in metrics:
        np.testing.assert_array_equal(np.isnan(m.per_query), no_pos)
        assert m.left_out == no_pos.sum() and m.counted == (~no_pos).sum()
        if m.counted:
            assert m.mean == pytest.approx(m.per_query[~no_pos].mean(), abs=1e-12)
        else:
            assert math.isnan(m.mean)
    g = group_auc(labels, scores, groups)
    np.testing.assert_array_equal(np.isnan(g.per_query), one_class)
    assert g.left_out == one_class.sum()


@FAST
@given(DATA)
def test_group_auc_and_auc_match_sklearn(queries):
    labels, scores, groups = flatten(queries)
    got = group_auc(labels, scores, groups)
    for value, g in zip(got.per_query, got.group_ids, strict=True):
        y = labels[groups == g] > 0
        if y.all() or not y.any():
            assert np.isnan(value)
        else:
            assert value == pytest.approx(roc_auc_score(y, scores[groups == g]), abs=1e-12)
    y = labels > 0
    overall = auc(labels, scores)
    if y.all() or not y.any():
        assert math.isnan(overall)
    else:
        assert overall == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Worked examples and the API


def test_mrr_large_tie_block_exact():
    # 200 tied items, 3 positives, after two negatives ranked above: rank s = 3.
    n, m, s = 200, 3, 3
    labels = np.r_[0, 0, np.ones(m), np.zeros(n - m)]
    scores = np.r_[2.0, 1.5, np.full(n, 1.0)]
    expected = sum(
        Fraction(math.comb(n - j - 1, m - 1), math.comb(n, m)) / (s + j) for j in range(n - m + 1)
    )
    got = mrr(labels, scores, np.zeros(labels.size, dtype=np.int64))
    assert got.per_query[0] == pytest.approx(float(expected), rel=1e-12)


def test_small_worked_examples():
    labels = np.array([1, 0, 0, 1, 0])
    scores = np.array([0.5, 0.5, 0.5, 0.1, 0.2])
    groups = np.array([7, 7, 7, 2, 2])
    res = evaluate_binary(labels, scores, groups)
    np.testing.assert_array_equal(res["mrr"].group_ids, [2, 7])
    np.testing.assert_allclose(res["mrr"].per_query, [0.5, (1 + 1 / 2 + 1 / 3) / 3])
    np.testing.assert_allclose(res["group_auc"].per_query, [0.0, 0.5])
    assert res["auc"] == pytest.approx(2 / 6)
    assert math.isnan(auc([1, 1], [0.1, 0.2]))


def test_evaluate_ranking_matches_single_calls():
    labels, scores, groups = random_groups(np.random.default_rng(8), tie_free=False)
    res = evaluate_ranking(labels, scores, groups, ks=(1, 3, 5, 10, None), gain="linear")
    assert list(res) == ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "ndcg"]
    for k, name in zip((1, 3, 5, 10, None), res, strict=True):
        assert_metric_close(res[name], ndcg(labels, scores, groups, k=k, gain="linear"), tol=0)
    default = evaluate_ranking(labels, scores, groups)
    assert list(default) == ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10"]


def test_group_metric_when_nothing_counts():
    m = ndcg([0, 0, 0], [0.1, 0.2, 0.3], [1, 1, 2])
    assert m.left_out == 2 and m.counted == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" warning
        assert math.isnan(m.mean)
    assert m.per_query.dtype == np.float64


OK = dict(labels=[1, 0, 2], scores=[0.3, 0.2, 0.1], group_ids=[1, 1, 2])


@pytest.mark.parametrize(
    "call",
    [
        lambda: ndcg([1, 0], [0.3, 0.2, 0.1], [1, 1, 1]),
        lambda: ndcg(OK["labels"], OK["scores"], [1, 1]),
        lambda: ndcg([[1, 0, 2]], [[0.3, 0.2, 0.1]], [[1, 1, 2]]),
        lambda: ndcg(OK["labels"], [0.3, np.nan, 0.1], OK["group_ids"]),
        lambda: ndcg(OK["labels"], [0.3, np.inf, 0.1], OK["group_ids"]),
        lambda: ndcg([1, -1, 2], OK["scores"], OK["group_ids"]),
        lambda: ndcg([], [], []),
        lambda: ndcg(OK["labels"], OK["scores"], [1.0, 1.0, 2.0]),
        lambda: ndcg(**OK, gain="quadratic"),
        lambda: evaluate_ranking(**OK, gain="log"),
        lambda: ndcg(**OK, k=0),
        lambda: ndcg(**OK, k=2.5),
        lambda: evaluate_ranking(**OK, ks=(1, -3)),
        lambda: mrr(OK["labels"], ["a", "b", "c"], OK["group_ids"]),
        lambda: group_auc(OK["labels"], [0.3, np.nan, 0.1], OK["group_ids"]),
        lambda: auc([1, 0], [0.5]),
    ],
    ids=[
        "length",
        "group_length",
        "two_dim",
        "nan_score",
        "inf_score",
        "negative_label",
        "empty",
        "float_groups",
        "unknown_gain",
        "unknown_gain_evaluate",
        "k_zero",
        "k_float",
        "negative_k",
        "string_scores",
        "auc_nan",
        "auc_length",
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()
