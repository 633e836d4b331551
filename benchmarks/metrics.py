"""Ranking metrics over query groups: NDCG@k, MRR and AUC, vectorised with numpy.

Written spec (DESIGN.md, "Metrics"; worked cases in ``shared/spec/ndcg_cases.json``):

* Input is one row per (query, item): ``labels`` (graded, >= 0), ``scores`` (finite floats) and
  ``group_ids`` (integer query ids). Rows of a query need not be contiguous. Per-query results
  are ordered by sorted unique group id and returned with those ids (:class:`GroupMetric`).
* Items of a query are ranked by score, highest first; rank ``r`` is 1-based.
* Gain: ``2**rel - 1`` ("exponential", the default) or ``rel`` ("linear").
* Discount: ``1 / log2(r + 1)`` for ``r <= k`` and 0 beyond the cut-off; ``k=None`` keeps the
  whole list.
* Ties: items with equal scores are ranked in every order with equal probability and the metric
  is the expectation over those orders. By linearity of expectation the expected DCG of a tie
  block is the sum of its gains times the mean discount over the positions it occupies
  (positions past ``k`` counting 0). So a constant-score model can never inherit the logged
  (row) order: it gets the same value however the rows are arranged.
* NDCG@k: expected DCG@k of the score order divided by the ideal DCG@k (labels sorted
  descending).
* MRR: a label > 0 is a positive. The reciprocal rank is ``1 / r`` of the first positive; with
  ties it is its expectation over tie orders. If the tie block holding the first positive starts
  at rank ``s``, has ``n`` items and ``m`` positives, the first positive sits at offset ``j``
  with probability ``C(n-j-1, m-1) / C(n, m)``, so ``E[RR] = sum_j P(j) / (s + j)``.
* Group AUC: per query, the probability that a random positive outscores a random negative,
  ties counting 1/2 (Mann-Whitney U / (m * (n - m))). ``auc`` is the same over all rows at once.
* Left-out queries: a query without any positive label (NDCG, MRR), or lacking either a positive
  or a negative (group AUC), has ``NaN`` in ``per_query``; it is left out of ``mean`` and
  counted in ``left_out``, which is reported beside every table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from benchmarks.metric_conventions import Convention

DEFAULT = Convention()

__all__ = [
    "Convention",
    "GAINS",
    "GroupMetric",
    "auc",
    "evaluate_binary",
    "evaluate_ranking",
    "group_auc",
    "mrr",
    "ndcg",
]

GAINS = ("exponential", "linear")


@dataclass(frozen=True)
class GroupMetric:
    """One metric per query: ``per_query[i]`` belongs to ``group_ids[i]`` (NaN = left out)."""

    name: str
    group_ids: np.ndarray
    per_query: np.ndarray

    @property
    def counted(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.per_query)))

    @property
    def left_out(self) -> int:
        return int(self.per_query.size - self.counted)

    @property
    def mean(self) -> float:
        # Explicit check instead of np.nanmean so that "no query counts" is a quiet NaN.
        if self.counted == 0:
            return float("nan")
        return float(np.nanmean(self.per_query))


# ----------------------------------------------------------------------------------------------
# Input checks


def _as_1d(name: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = _as_1d("labels", labels)
    scores = _as_1d("scores", scores)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.size} vs {scores.size}")
    if labels.size == 0:
        raise ValueError("labels and scores are empty")
    if labels.dtype.kind not in "biuf" or scores.dtype.kind not in "biuf":
        raise ValueError("labels and scores must be numeric")
    labels = labels.astype(np.float64, copy=False)
    scores = scores.astype(np.float64, copy=False)
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    if not (np.isfinite(labels).all() and (labels >= 0).all()):
        raise ValueError("labels must be finite and >= 0")
    return labels, scores


def _check_inputs(labels, scores, group_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels, scores = _check_labels_scores(labels, scores)
    group_ids = _as_1d("group_ids", group_ids)
    if group_ids.shape != labels.shape:
        raise ValueError(
            f"group_ids and labels differ in length: {group_ids.size} vs {labels.size}"
        )
    if group_ids.dtype.kind not in "iu":
        raise ValueError(f"group_ids must be integers, got dtype {group_ids.dtype}")
    return labels, scores, group_ids


def _check_k(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")


def _gains(labels: np.ndarray, gain: str) -> np.ndarray:
    if gain == "exponential":
        return np.exp2(labels) - 1.0
    if gain == "linear":
        return labels
    raise ValueError(f"unknown gain {gain!r}; expected one of {GAINS}")


# ----------------------------------------------------------------------------------------------
# Ranking: rows sorted by (query, score descending) with tie blocks marked, computed once and
# shared by every metric.


@dataclass(frozen=True)
class _Ranking:
    group_ids: np.ndarray  # sorted unique query ids
    group: np.ndarray  # query index (into group_ids) of each row, rows in ranked order
    labels: np.ndarray  # labels in ranked order
    pos: np.ndarray  # 0-based rank of each row within its query
    sizes: np.ndarray  # rows per query
    block_start: np.ndarray  # row index where each tie block starts (a block never spans queries)
    block_size: np.ndarray

    @property
    def has_ties(self) -> bool:
        return self.block_start.size != self.group.size


def _order_within_groups(group: np.ndarray, key: np.ndarray, stable: bool = False) -> np.ndarray:
    """Row order sorting by ``group`` (codes >= 0) ascending, then ``key`` descending.

    Equal keys of a query end up adjacent, in no particular order (``stable``: in row order).
    Why not np.lexsort: two plain argsorts on one int64 key (group * n + global rank of key)
    are several times faster.
    """
    n = key.size
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-key, kind="stable" if stable else None)] = np.arange(n, dtype=np.int64)
    # Equal keys get distinct but consecutive global ranks, so they stay adjacent per query.
    rank += group * n
    return np.argsort(rank)


def _group_codes(group_ids: np.ndarray) -> np.ndarray:
    """Order-preserving int64 codes >= 0 with code * n still fitting in int64."""
    lo, hi = group_ids.min(), group_ids.max()
    if (int(hi) - int(lo) + 1) * group_ids.size < 2**62:
        # Why: offsetting is much cheaper than np.unique and keeps the order of the ids. Done in
        # uint64, whose wrap-around gives the exact offset for any integer dtype.
        offset = group_ids.astype(np.uint64) - np.asarray(lo).astype(np.uint64)
        return offset.astype(np.int64)
    return np.unique(group_ids, return_inverse=True)[1].astype(np.int64)


def _segment_starts(sizes: np.ndarray) -> np.ndarray:
    return np.cumsum(sizes) - sizes


def _rank(
    labels: np.ndarray, scores: np.ndarray, group_ids: np.ndarray, ties: str = "average"
) -> _Ranking:
    """The ranked rows; ``ties="file_order"`` ranks tied rows in their row order, each a
    block of its own (no averaging)."""
    codes = _group_codes(group_ids)
    file_order = ties == "file_order"
    order = _order_within_groups(codes, scores, stable=file_order)
    codes, scores = codes[order], scores[order]
    # Query boundaries in the ranked rows give the unique ids, sizes and dense query index.
    new_group = np.empty(codes.size, dtype=bool)
    new_group[0] = True
    np.not_equal(codes[1:], codes[:-1], out=new_group[1:])
    group_start = np.flatnonzero(new_group)
    sizes = np.diff(np.append(group_start, codes.size))
    group = np.repeat(np.arange(sizes.size), sizes)
    pos = np.arange(codes.size) - np.repeat(group_start, sizes)
    # A tie block starts where the query or the score changes.
    new_block = new_group  # reused in place: every query start is also a block start
    new_block[1:] |= (scores[1:] != scores[:-1]) | file_order
    block_start = np.flatnonzero(new_block)
    block_size = np.diff(np.append(block_start, codes.size))
    uniq = group_ids[order[group_start]]
    return _Ranking(uniq, group, labels[order], pos, sizes, block_start, block_size)


# ----------------------------------------------------------------------------------------------
# NDCG


def _discounts(max_len: int, k: int | None, kind: str = "log2") -> np.ndarray:
    """Discount by 0-based rank p: 1 / log2(p + 2) (LETOR 4.0: 1 for p < 2, then
    1 / log2(p + 1)), zero from rank k on."""
    pos = np.arange(max_len, dtype=np.float64)
    disc = 1.0 / np.log2(pos + 2.0) if kind == "log2" else 1.0 / np.log2(np.maximum(pos, 1.0) + 1.0)
    if k is not None:
        disc[k:] = 0.0
    return disc


def _expected_discounts(r: _Ranking, disc: np.ndarray) -> np.ndarray:
    """Per-row discount, averaged over the positions of the row's tie block."""
    row_disc = disc[r.pos]
    if not r.has_ties:
        return row_disc
    # Expected DCG of a block = sum of its gains * mean discount of its positions (linearity).
    block_mean = np.add.reduceat(row_disc, r.block_start) / r.block_size
    return np.repeat(block_mean, r.block_size)


@dataclass(frozen=True)
class _Runs:
    """The ideal order (labels descending per query) as runs of equal labels."""

    group: np.ndarray  # query index of each run
    label: np.ndarray
    start: np.ndarray  # 0-based rank of the run's first item
    length: np.ndarray


def _ideal_runs(r: _Ranking) -> _Runs:
    labels = r.labels
    top = labels.max()
    # Integer labels with a small (queries x label values) histogram are counted, not sorted.
    small = r.group_ids.size * (top + 1) <= 8 * labels.size
    if small and np.array_equal(labels, np.floor(labels)):
        return _ideal_runs_counted(r, int(top))
    # General labels: sort within queries (rows are already contiguous per query).
    order = _order_within_groups(r.group, labels)
    ones = np.ones(labels.size, dtype=np.int64)
    return _Runs(r.group, labels[order], r.pos, ones)


def _ideal_runs_counted(r: _Ranking, top: int) -> _Runs:
    """Why: graded labels take few values, so a per-query histogram replaces a second sort."""
    width = top + 1
    n_groups = r.group_ids.size
    # Column c counts label top - c, so each row of the histogram is in descending label order.
    column = top - r.labels.astype(np.int64)
    counts = np.bincount(r.group * width + column, minlength=n_groups * width)
    counts = counts.reshape(n_groups, width)
    starts = np.cumsum(counts, axis=1) - counts
    group, col = np.nonzero(counts)
    return _Runs(group, (top - col).astype(np.float64), starts[group, col], counts[group, col])


def _ideal_dcg(runs: _Runs, disc: np.ndarray, gain: str, n_groups: int) -> np.ndarray:
    # Equal labels have equal gains: a run adds gain * (sum of the discounts it covers).
    cum = np.concatenate(([0.0], np.cumsum(disc)))
    covered = cum[runs.start + runs.length] - cum[runs.start]
    return np.bincount(runs.group, weights=_gains(runs.label, gain) * covered, minlength=n_groups)


def _ndcg_from(
    r: _Ranking, runs: _Runs, k: int | None, gain: str, convention: Convention = DEFAULT
) -> GroupMetric:
    n_groups = r.group_ids.size
    disc = _discounts(int(r.sizes.max()), k, convention.discount)
    dcg = np.bincount(
        r.group, weights=_gains(r.labels, gain) * _expected_discounts(r, disc), minlength=n_groups
    )
    idcg = _ideal_dcg(runs, disc, gain, n_groups)
    per_query = np.full(n_groups, np.nan)
    # The ideal DCG is > 0 exactly when the query has a positive label (gain > 0, k >= 1).
    np.divide(dcg, idcg, out=per_query, where=idcg > 0)
    per_query = _fill_empty(per_query, convention)
    if convention.short_lists == "zero" and k is not None:
        per_query[r.sizes < k] = 0.0
    name = "ndcg" if k is None else f"ndcg@{k}"
    return GroupMetric(name, r.group_ids, per_query)


def _fill_empty(per_query: np.ndarray, convention: Convention) -> np.ndarray:
    """Queries without a positive (NaN): left out, or scored 0 or 1."""
    if convention.empty_queries != "skip":
        per_query[np.isnan(per_query)] = 0.0 if convention.empty_queries == "zero" else 1.0
    return per_query


def ndcg(
    labels,
    scores,
    group_ids,
    k: int | None = 10,
    gain: str = "exponential",
    convention: Convention = DEFAULT,
) -> GroupMetric:
    """NDCG@k per query (``k=None``: whole list); queries without a positive label are NaN
    (left out) unless the convention scores them."""
    _check_k(k)
    _gains(np.zeros(1), gain)  # fail on an unknown gain before any work
    r = _rank(*_check_inputs(labels, scores, group_ids), ties=convention.ties)
    return _ndcg_from(r, _ideal_runs(r), k, gain, convention)


def evaluate_ranking(
    labels,
    scores,
    group_ids,
    ks=(1, 3, 5, 10),
    gain: str = "exponential",
    convention: Convention = DEFAULT,
) -> dict[str, GroupMetric]:
    """NDCG at each k in ``ks``, keyed by metric name ("ndcg@10"; "ndcg" for k=None)."""
    for k in ks:
        _check_k(k)
    _gains(np.zeros(1), gain)
    # Sort once, share the ranking and the ideal order across all cut-offs.
    r = _rank(*_check_inputs(labels, scores, group_ids), ties=convention.ties)
    runs = _ideal_runs(r)
    results = (_ndcg_from(r, runs, k, gain, convention) for k in ks)
    return {m.name: m for m in results}


# ----------------------------------------------------------------------------------------------
# MRR


def _mrr_from(r: _Ranking, convention: Convention = DEFAULT) -> GroupMetric:
    positive = r.labels > 0
    per_query = np.full(r.group_ids.size, np.nan)
    pos_rows = np.flatnonzero(positive)
    if pos_rows.size == 0:
        return GroupMetric("mrr", r.group_ids, _fill_empty(per_query, convention))
    # First positive row of each query (rows are sorted by query, then score).
    is_first = np.ones(pos_rows.size, dtype=bool)
    is_first[1:] = r.group[pos_rows[1:]] != r.group[pos_rows[:-1]]
    first = pos_rows[is_first]
    # The tie block holding it: start rank s (1-based), n items, m positives.
    block = np.searchsorted(r.block_start, first, side="right") - 1
    s = r.pos[r.block_start[block]] + 1.0
    n = r.block_size[block].astype(np.float64)
    m = np.add.reduceat(positive.astype(np.float64), r.block_start)[block]
    # One term per possible offset j = 0 .. n - m, flattened over queries (sum over queries of
    # n - m + 1 terms is at most the row count), so no loop over queries or offsets.
    n_terms = (n - m + 1).astype(np.int64)
    query = np.repeat(np.arange(first.size), n_terms)
    j = np.arange(query.size) - np.repeat(_segment_starts(n_terms), n_terms)
    nq, mq = n[query], m[query]
    # log P(j) = log C(n-j-1, m-1) - log C(n, m); exact 0 when n = m = 1 (no tie).
    log_p = (
        gammaln(nq - j)
        - gammaln(mq)
        - gammaln(nq - j - mq + 1)
        - (gammaln(nq + 1) - gammaln(mq + 1) - gammaln(nq - mq + 1))
    )
    terms = np.exp(log_p) / (s[query] + j)
    per_query[r.group[first]] = np.bincount(query, weights=terms, minlength=first.size)
    return GroupMetric("mrr", r.group_ids, _fill_empty(per_query, convention))


def mrr(labels, scores, group_ids, convention: Convention = DEFAULT) -> GroupMetric:
    """Expected reciprocal rank of the first positive (label > 0) per query, ties averaged
    (or in row order, as the convention says)."""
    r = _rank(*_check_inputs(labels, scores, group_ids), ties=convention.ties)
    return _mrr_from(r, convention)


# ----------------------------------------------------------------------------------------------
# AUC


def _group_auc_from(r: _Ranking) -> GroupMetric:
    positive = r.labels > 0
    n_groups = r.group_ids.size
    n_pos = np.bincount(r.group, weights=positive, minlength=n_groups)
    n_neg = r.sizes - n_pos
    # Ascending 1-based mid-rank of each row within its query: tied rows share the block mean.
    block_mid = r.pos[r.block_start] + (r.block_size - 1) / 2.0
    mid_rank = r.sizes[r.group] - np.repeat(block_mid, r.block_size)
    rank_sum = np.bincount(r.group, weights=np.where(positive, mid_rank, 0.0), minlength=n_groups)
    # Mann-Whitney: U = rank sum of positives - m(m+1)/2; AUC = U / (m * (n - m)).
    per_query = np.full(n_groups, np.nan)
    np.divide(
        rank_sum - n_pos * (n_pos + 1) / 2.0,
        n_pos * n_neg,
        out=per_query,
        where=(n_pos > 0) & (n_neg > 0),
    )
    return GroupMetric("group_auc", r.group_ids, per_query)


def group_auc(labels, scores, group_ids) -> GroupMetric:
    """ROC AUC per query (ties 1/2); queries lacking a positive or a negative are NaN."""
    return _group_auc_from(_rank(*_check_inputs(labels, scores, group_ids)))


def auc(labels, scores) -> float:
    """ROC AUC over all rows (Mann-Whitney, ties 1/2); NaN if one class is absent."""
    labels, scores = _check_labels_scores(labels, scores)
    one_group = np.zeros(labels.size, dtype=np.int64)
    return float(_group_auc_from(_rank(labels, scores, one_group)).per_query[0])


def evaluate_binary(
    labels, scores, group_ids, convention: Convention = DEFAULT
) -> dict[str, GroupMetric | float]:
    """MRR (in the convention) and group AUC per query plus the overall AUC; the AUCs count
    ties 1/2 and leave out queries lacking a class, whatever the convention."""
    labels, scores, group_ids = _check_inputs(labels, scores, group_ids)
    r = _rank(labels, scores, group_ids)
    mrr_ranking = (
        r if convention.ties == "average" else _rank(labels, scores, group_ids, "file_order")
    )
    return {
        "mrr": _mrr_from(mrr_ranking, convention),
        "group_auc": _group_auc_from(r),
        "auc": auc(labels, scores),
    }
