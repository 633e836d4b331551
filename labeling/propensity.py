"""Position bias: how likely a user is to examine each position, estimated from the log.

Clicks confound relevance with position: an item shown at position 1 is clicked more often
than the same item at position 8 simply because users look at position 1 more. Under the
**position-based click model** (PBM; Richardson et al. 2007, Craswell et al. 2008)::

    P(click | q, d, k) = theta_k * gamma_(q, d)

``theta_k`` is the probability that position ``k`` is examined (the *propensity*) and
``gamma_(q, d)`` the probability that product ``d`` attracts a click for query ``q`` once
examined. Debiasing (inverse-propensity weighting, click-rate labels) needs ``theta`` only up
to a constant, so every estimate here is reported **relative to position 1**
(``propensity(1) = 1.0``). Two estimators are offered; :func:`estimate_propensities` picks
one (``method="auto"``) or runs the one asked for.

1. From randomized swap interventions (``method="intervention"``)
-------------------------------------------------------------------
Joachims, Swaminathan & Schnabel, "Unbiased Learning-to-Rank with Biased Feedback",
WSDM 2017 (swap interventions); Agarwal, Zaitsev, Wang, Li, Najork & Joachims, "Estimating
Position Bias without Intrusive Interventions", WSDM 2019 (intervention harvesting and its
all-pairs extremum estimator).

The log records, per impression, ``randomized`` (1 on every row of a request whose list was
randomized) and ``ranker_position`` (where the logging ranker had put the item before
randomization). Let ``j`` be an impression's ranker position (its shown position when the
request was not randomized) and ``k`` its shown position. Because which requests are
randomized, and how, does not depend on their contents, the items the ranker put at ``j``
have the same mean attraction ``r_j`` whatever position they end up at, so for every cell::

    E[click | j, k] = theta_k * r_j

E.g. with ``rand_pair`` (position 1 swapped with a uniform k in 2..K),
``theta_k / theta_1 = CTR(j=1 shown at k) / CTR(j=1 shown at 1)`` (Joachims et al.'s swap
estimate), and the reverse swap gives ``theta_1 / theta_k = CTR(j=k at 1) / CTR(j=k at k)``;
``rand_top`` (a shuffled list) fills every (j, k) cell. All cells are combined by maximum
likelihood of the Bernoulli rank-one model ``c_jk ~ Binomial(n_jk, theta_k r_j)``, which is
Agarwal et al.'s all-pairs estimator with the interventional sets indexed by ranker position.
It is fitted by EM (the same E and M steps as below, with ``gamma`` indexed by ``j``) on the
K x K table of clicks and impressions. Ordinary (not randomized) requests fill the diagonal
cells ``j = k`` and sharpen ``r_j``; only randomized rows that moved link positions.

*Evidence* of position ``k`` is the number of randomized impressions that were moved into or
out of ``k`` (shown at ``k`` with ``ranker_position != k``, or ``ranker_position == k`` shown
elsewhere). A position without evidence, or not linked to position 1 through moved
impressions, cannot be estimated: its propensity is null and a note says so. Randomized rows
without ``ranker_position`` are dropped (noted).

2. Regression-EM (``method="regression_em"``), for logs without interventions
-------------------------------------------------------------------------------
Wang, Golbandi, Bendersky, Metzler & Najork, "Position Bias Estimation for Unbiased Learning
to Rank in Personal Search", WSDM 2018.

Examination ``E`` and relevance ``R`` are latent, ``C = E * R`` with ``P(E = 1) = theta_k``
and ``P(R = 1) = gamma``. EM alternates:

- **E-step.** A clicked row has ``E = R = 1``. For an unclicked row::

      P(E=1, R=0 | C=0) = theta (1 - gamma) / (1 - theta gamma)
      P(E=0, R=1 | C=0) = (1 - theta) gamma / (1 - theta gamma)
      P(E=0, R=0 | C=0) = (1 - theta)(1 - gamma) / (1 - theta gamma)

  so ``P(E=1 | row) = c + (1 - c) theta (1 - gamma) / (1 - theta gamma)`` and
  ``P(R=1 | row) = c + (1 - c) (1 - theta) gamma / (1 - theta gamma)``.
- **M-step for theta.** ``theta_k`` = mean of ``P(E=1 | row)`` over the rows at position k.
- **Regression step for gamma.** ``gamma`` is refitted to the relevance posteriors
  ``P(R=1 | row)`` of each (query, product) pair (``pair_columns``): the posterior mean under a
  ``Beta(s m, s (1 - m))`` prior, ``gamma = (sum P(R=1) + s m) / (impressions + s)``, with
  ``s = prior_strength`` and ``m`` the mean relevance posterior of all pairs (empirical
  Bayes), so a pair seen once does not get ``gamma = 1``. With ``feature_columns`` the prior
  mean ``m`` of each pair is instead a regression of the pairs' relevance posteriors on the
  pairs' mean features (scikit-learn's ``HistGradientBoostingRegressor`` unless another
  ``regressor`` is passed), refitted ``regression_rounds`` times, as in Wang et al.
  (``prior_strength=inf`` uses the regression alone).

Two refinements keep the per-pair version consistent on sparse logs, where most pairs have a
handful of impressions (the "incidental parameters" problem of per-pair maximum likelihood,
which drives ``theta`` towards 1 through pairs whose every impression was clicked):

- **Informative pairs.** With a free ``gamma`` per pair, a pair shown at one position only
  carries no information on ``theta`` (any ``theta`` fits it by rescaling ``gamma``); with a
  shrunk ``gamma`` it would pull ``theta`` towards the raw click-rate curve, which mixes
  position with the logging ranker's ordering. ``theta`` is therefore fitted on the pairs
  shown at two or more distinct positions.
- **Cross-fitted gamma.** In the E-step of a (pair, position) cell, ``gamma`` comes from the
  pair's *other* cells (leave-one-cell-out), so a cell's own clicks never set its relevance.
  The relative propensities then compare the same pair across positions, as intervention
  harvesting does.

Rows are first aggregated to (pair, position) cells with click and impression counts; EM then
runs on the cells with ``np.bincount``, so its cost is per cell, not per impression. When more
than ``max_cells`` informative cells exist, a seeded random subset of pairs is used (noted):
K propensities need far fewer. Iteration stops when no relative propensity moves by more
than ``tol`` or after ``max_iter`` iterations (noted when it did not converge). *Evidence* of
position ``k`` is the number of impressions at ``k`` in the cells EM used.

Regression-EM assumes ``gamma`` depends on (query, product) only. Where the logging ranker
used information about the user that makes the same pair more relevant to the users who saw
it higher (personalization), that assumption fails and propensities come out too steep;
interventions do not have this problem. Choose ``pair_columns`` as fine as the data allows.

Accuracy (``benchmarks/scripts/bench_propensity.py``; the simulator's ``default`` preset,
20k requests x 10; max relative error at positions 1-10, mean over seeds): interventions
about 17-28% with 10% of requests swapped (some 400 moved impressions per position: the
sampling error of any swap estimator at that size), 5-12% with 50% swapped or shuffled at
position bias <= 1, about 4% on 20M impressions; regression-EM about 24-30%, mostly from
the personalization confounding above (with an oracle pair key that removes it: 11% at
position bias 0.5, 23% at 1.0, 36% at 2.0, where positions 6-10 are examined 1-3% of the
time). Per-pair gammas from a handful of impressions also leave regression-EM's
propensities at positions 2-5 somewhat too high (the E-step weight ``1 / (1 - theta gamma)``
grows with the noise in ``gamma``).

``method="auto"`` uses interventions when the log has ``randomized`` rows with a
``ranker_position`` and every position up to ``max_position`` has at least ``min_evidence``
moved impressions, and regression-EM otherwise (the notes say why). A log without
``position`` cannot be debiased for position: :func:`estimate_propensities` raises a one-line
``ValueError`` and the caller decides on a fallback. With either estimator, a position with
evidence but not a single click in the data used is null as well (its estimate would be 0,
an infinite inverse-propensity weight), and every position is null when position 1, the
anchor, has no click; :func:`impression_propensity` fills nulls from the position above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

METHODS = ("auto", "intervention", "regression_em")
_EPS = 1e-9


@dataclass
class PropensityEstimate:
    """Relative examination propensity per position (position 1 = 1.0).

    ``curve``: ``position`` (Int32, 1..max_position), ``propensity`` (Float64, null where the
    log holds no evidence for that position), ``evidence`` (Int64, see the module docstring).
    ``method``: the estimator that produced it, ``"intervention"`` or ``"regression_em"``.
    ``notes``: what a user should know (why this method, data used, convergence, gaps).
    """

    curve: pl.DataFrame
    method: str
    notes: list[str] = field(default_factory=list)

    @property
    def max_position(self) -> int:
        return int(self.curve["position"].max())


# --------------------------------------------------------------------------- public API


def estimate_propensities(
    impressions: pl.DataFrame,
    method: str = "auto",
    max_position: int | None = None,
    *,
    min_evidence: int = 100,
    pair_columns: Sequence[str] = ("query", "product_id"),
    prior_strength: float = 0.5,
    feature_columns: Sequence[str] | None = None,
    regressor=None,
    regression_rounds: int = 3,
    tol: float = 1e-5,
    max_iter: int = 500,
    max_cells: int = 1_000_000,
    seed: int = 0,
) -> PropensityEstimate:
    """Estimate the examination propensity of positions 1..``max_position`` from the log.

    ``impressions`` needs ``position`` and ``click``; the intervention estimator also reads
    ``randomized`` and ``ranker_position``, regression-EM ``pair_columns`` (and
    ``feature_columns`` when given). ``max_position`` defaults to the largest position in the
    log; rows shown (or, when randomized, ranked) beyond it are left out. See the module
    docstring for the estimators and their settings.
    """
    if method not in METHODS:
        raise ValueError(f"unknown propensity method {method!r}; valid: {', '.join(METHODS)}")
    _check_impressions(impressions)
    if not 0 < tol or max_iter < 1 or max_cells < 2 or prior_strength < 0:
        raise ValueError(
            "propensity settings: need tol > 0, max_iter >= 1, max_cells >= 2, prior_strength >= 0"
        )
    k = int(impressions["position"].max()) if max_position is None else int(max_position)
    if k < 1:
        raise ValueError(f"max_position must be >= 1, got {max_position}")
    if int(impressions["position"].min()) > k:
        raise ValueError(f"cannot estimate position bias: no impressions at positions 1..{k}")

    notes: list[str] = []
    if method in ("auto", "intervention"):
        table, problem = _intervention_table(impressions, k)
        if table is not None:
            shortest = int(table.evidence[1:].min()) if k > 1 else int(table.evidence[0])
            if method == "intervention" or shortest >= min_evidence:
                if method == "auto":
                    notes.append(
                        f"auto: randomized requests give >= {min_evidence} moved impressions "
                        f"at every position 1..{k} (fewest: {shortest}); using interventions"
                    )
                return _intervention_estimate(table, notes, tol)
            problem = (
                f"randomized requests give only {shortest} moved impressions at some position "
                f"(min_evidence={min_evidence})"
            )
        if method == "intervention":
            raise ValueError(f"cannot estimate propensities from interventions: {problem}")
        notes.append(f"auto: {problem}; using regression-EM")
    return _regression_em_estimate(
        impressions,
        k,
        notes,
        pair_columns=tuple(pair_columns),
        prior_strength=float(prior_strength),
        feature_columns=tuple(feature_columns) if feature_columns else None,
        regressor=regressor,
        regression_rounds=regression_rounds,
        tol=tol,
        max_iter=max_iter,
        max_cells=max_cells,
        seed=seed,
    )


def impression_propensity(
    impressions: pl.DataFrame, estimate: PropensityEstimate, name: str = "propensity"
) -> pl.Series:
    """Each impression's examination propensity, in row order (``Float64``).

    A position gets its estimated propensity; positions beyond the estimated range, and
    positions the estimate left null (no evidence), get the last estimated value before them
    (so every row has a propensity, position 1 being 1.0 by construction).
    """
    _check_impressions(impressions, need_click=False)
    filled = estimate.curve["propensity"].fill_null(strategy="forward").to_numpy()
    filled = np.where(np.isnan(filled), 1.0, filled)  # nothing estimated before: the anchor
    index = np.minimum(impressions["position"].to_numpy(), len(filled)) - 1
    return pl.Series(name, filled[index], dtype=pl.Float64)


# --------------------------------------------------------------------------- checks


def _check_impressions(impressions: pl.DataFrame, need_click: bool = True) -> None:
    if "position" not in impressions.columns:
        raise ValueError(
            "cannot estimate position bias: the impressions have no 'position' column, so "
            "clicks cannot be debiased for position"
        )
    if need_click and "click" not in impressions.columns:
        raise ValueError("cannot estimate position bias: the impressions have no 'click' column")
    if impressions.height == 0:
        raise ValueError("cannot estimate position bias: no impressions")
    position = impressions["position"]
    if not position.dtype.is_integer() or position.null_count() or position.min() < 1:
        raise ValueError(
            "cannot estimate position bias: 'position' must be integers >= 1 without nulls "
            "(validate the log first)"
        )


# --------------------------------------------------------------------------- EM core


def _pbm_em(
    group: np.ndarray,
    position: np.ndarray,
    n: np.ndarray,
    clicks: np.ndarray,
    n_groups: int,
    n_positions: int,
    *,
    prior_strength: float,
    prior_mean: np.ndarray | None,
    leave_out: bool,
    tol: float,
    max_iter: int,
    theta: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """EM for ``P(click) = theta[position] * gamma[group]`` on aggregated cells.

    Cells are (group, position) with ``n`` impressions and ``clicks`` clicks. ``gamma`` is
    the Beta(s m, s (1 - m)) posterior mean of a group's relevance posteriors, ``m`` the
    per-group ``prior_mean`` or, when None, the mean over all cells (refreshed every
    iteration). With ``leave_out`` each cell sees its group's gamma without its own data.
    Returns (theta, per-group relevance posterior sums, iterations, converged).
    """
    unclicked = n - clicks
    at_position = np.bincount(position, n, n_positions)
    group_n = np.bincount(group, n, n_groups)
    total_n = group_n.sum()
    s = prior_strength
    if theta is None:
        theta = np.full(n_positions, 0.5)
    if leave_out:
        other_n = group_n[group] - n
    gamma = np.full(len(group), 0.5)
    previous = theta / theta[0]
    relevance_sums = np.zeros(n_groups)
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        t = theta[position]
        inverse = 1.0 / (1.0 - t * gamma)
        examined = clicks + unclicked * (t * (1.0 - gamma) * inverse)
        relevant = clicks + unclicked * ((1.0 - t) * gamma * inverse)
        theta = np.bincount(position, examined, n_positions) / np.maximum(at_position, _EPS)
        theta = np.clip(theta, _EPS, 1.0 - 1e-12)
        relevance_sums = np.bincount(group, relevant, n_groups)
        if prior_mean is None:
            mean = relevance_sums.sum() / total_n
        else:
            mean = prior_mean[group]
        if math.isinf(s):
            gamma = np.broadcast_to(mean, group.shape).astype(np.float64)
        elif leave_out:
            gamma = (relevance_sums[group] - relevant + s * mean) / np.maximum(other_n + s, _EPS)
        else:
            gamma = (relevance_sums[group] + s * mean) / np.maximum(group_n[group] + s, _EPS)
        gamma = np.clip(gamma, _EPS, 1.0 - _EPS)
        current = theta / theta[0]
        if np.max(np.abs(current - previous)) < tol:
            converged = True
            break
        previous = current
    return theta, relevance_sums, iterations, converged


# --------------------------------------------------------------------------- interventions


@dataclass
class _InterventionTable:
    n: np.ndarray  # (K, K) impressions by ranker position j (rows) and shown position k
    clicks: np.ndarray  # (K, K)
    evidence: np.ndarray  # (K,) moved impressions into or out of each position
    linked: np.ndarray  # (K,) bool: connected to position 1 through moved cells
    randomized_requests: int
    dropped: int  # randomized rows without a usable ranker_position


def _intervention_table(
    impressions: pl.DataFrame, k: int
) -> tuple[_InterventionTable | None, str | None]:
    """The K x K click table, or None and why the log cannot give one.

    Works on int32 and boolean arrays, one pass each, so a 20M-row log costs a few hundred MB.
    """
    columns = impressions.columns
    if "randomized" not in columns or "ranker_position" not in columns:
        return None, "the log has no 'randomized' and 'ranker_position' columns"
    flag = (impressions["randomized"].cast(pl.Int8).fill_null(0) > 0).to_numpy()
    if not flag.any():
        return None, "the log has no randomized requests"
    shown = impressions["position"].cast(pl.Int32).to_numpy()
    ranked = impressions["ranker_position"].cast(pl.Int32).fill_null(0).to_numpy()
    clicked = (impressions["click"].cast(pl.Int8).fill_null(0) > 0).to_numpy()
    usable_rank = (ranked >= 1) & (ranked <= k)
    dropped = int((flag & ~usable_rank).sum())
    j = np.where(flag, ranked, shown)
    del ranked
    keep = (shown <= k) & (~flag | usable_rank)
    # Rows left out go to an extra bin, k * k, dropped below: no filtered copies.
    cell = np.where(keep, (j - 1) * k + (shown - 1), k * k)
    moved = flag & keep & (j != shown)
    if not moved.any():
        return None, "randomized requests moved no item within the positions estimated"
    bins = k * k + 1
    n = np.bincount(cell, minlength=bins)[:-1].reshape(k, k).astype(np.float64)
    clicks = np.bincount(cell[clicked], minlength=bins)[:-1].reshape(k, k).astype(np.float64)
    evidence = np.bincount(shown[moved] - 1, minlength=k) + np.bincount(j[moved] - 1, minlength=k)
    moved_cells = np.bincount(cell[moved], minlength=bins)[:-1].reshape(k, k)
    linked = _linked_to_first(moved_cells > 0)
    randomized_requests = _count_randomized_requests(impressions)
    return _InterventionTable(n, clicks, evidence, linked, randomized_requests, dropped), None


def _count_randomized_requests(impressions: pl.DataFrame) -> int:
    if "request_id" not in impressions.columns:
        return -1
    return impressions.filter(pl.col("randomized").cast(pl.Int8) > 0)["request_id"].n_unique()


def _linked_to_first(adjacent: np.ndarray) -> np.ndarray:
    """Positions connected to position 1 in the graph whose edges are moved cells (j, k)."""
    k = len(adjacent)
    edges = adjacent | adjacent.T
    linked = np.zeros(k, dtype=bool)
    linked[0] = True
    frontier = linked.copy()
    while frontier.any():
        reached = edges[frontier].any(axis=0) & ~linked
        linked |= reached
        frontier = reached
    return linked


def _intervention_estimate(
    table: _InterventionTable, notes: list[str], tol: float
) -> PropensityEstimate:
    k = len(table.evidence)
    j_index, k_index = np.nonzero(table.n > 0)
    theta, _, iterations, converged = _pbm_em(
        j_index,
        k_index,
        table.n[j_index, k_index],
        table.clicks[j_index, k_index],
        k,
        k,
        prior_strength=0.0,
        prior_mean=None,
        leave_out=False,
        tol=min(tol, 1e-7),
        max_iter=20_000,
    )
    propensity = theta / theta[0]
    evidenced = table.linked & (table.evidence > 0)
    requests = (
        f"{table.randomized_requests:,} randomized requests, "
        if table.randomized_requests >= 0
        else ""
    )
    notes.append(
        f"intervention: {requests}{int(table.evidence.sum()) // 2:,} moved impressions, "
        f"{int(table.n.sum()):,} impressions in the {k}x{k} (ranker position, shown position) "
        f"table; all-pairs maximum likelihood by EM, {iterations} iterations"
        + ("" if converged else " (not converged)")
    )
    if table.dropped:
        notes.append(
            f"intervention: {table.dropped:,} randomized rows without a ranker_position in "
            f"1..{k} were left out"
        )
    missing = np.flatnonzero(~evidenced) + 1
    if len(missing):
        notes.append(
            "intervention: no randomized evidence linking position(s) "
            f"{_ranges(missing)} to position 1; their propensity is null"
        )
    known = _with_clicks(evidenced, table.clicks.sum(axis=0), notes)
    return PropensityEstimate(_curve(propensity, known, table.evidence), "intervention", notes)


# --------------------------------------------------------------------------- regression-EM


@dataclass
class _Cells:
    pair: np.ndarray  # int64 pair index of each (pair, position) cell, 0..n_pairs - 1
    position: np.ndarray  # int64 0-based position
    n: np.ndarray  # float64 impressions
    clicks: np.ndarray  # float64 clicks
    n_pairs: int
    row_pair: np.ndarray | None  # pair index of each kept row (only when features are used)
    kept_rows: np.ndarray | None  # bool mask of the rows kept (position <= K)


def _regression_em_estimate(
    impressions: pl.DataFrame,
    k: int,
    notes: list[str],
    *,
    pair_columns: tuple[str, ...],
    prior_strength: float,
    feature_columns: tuple[str, ...] | None,
    regressor,
    regression_rounds: int,
    tol: float,
    max_iter: int,
    max_cells: int,
    seed: int,
) -> PropensityEstimate:
    missing = [c for c in (*pair_columns, *(feature_columns or ())) if c not in impressions.columns]
    if missing:
        raise ValueError(
            f"cannot run regression-EM: the impressions lack column(s) {', '.join(missing)}"
        )
    cells = _aggregate_cells(impressions, pair_columns, k, with_rows=bool(feature_columns))
    cells_in_pair = np.bincount(cells.pair, minlength=cells.n_pairs)
    informative = cells_in_pair[cells.pair] > 1
    n_informative_pairs = int((cells_in_pair > 1).sum())
    if n_informative_pairs == 0:
        notes.append(
            "regression-EM: no pair was shown at two positions; fitting all pairs, so the "
            "propensities lean on the Beta prior and follow the raw click-rate curve"
        )
        informative = np.ones(len(cells.pair), dtype=bool)
    chosen = _subsample_pairs(cells, informative, max_cells, seed, notes)
    pair_ids, pair = np.unique(cells.pair[chosen], return_inverse=True)
    position, n, clicks = cells.position[chosen], cells.n[chosen], cells.clicks[chosen]
    n_pairs = len(pair_ids)

    ctr = np.bincount(position, clicks, k) / np.maximum(np.bincount(position, n, k), 1)
    theta = np.clip(0.5 * ctr / max(ctr[0], _EPS), 0.01, 0.5) if ctr[0] > 0 else None
    settings = dict(leave_out=True, tol=tol, max_iter=max_iter)
    total_iterations, converged = 0, True
    if feature_columns:
        features = _pair_features(impressions, feature_columns, cells, pair_ids)
        prior_mean = None
        for _ in range(max(1, regression_rounds)):
            theta, relevance, iterations, converged = _pbm_em(
                pair,
                position,
                n,
                clicks,
                n_pairs,
                k,
                prior_strength=prior_strength,
                prior_mean=prior_mean,
                theta=theta,
                **settings,
            )
            total_iterations += iterations
            target = relevance / np.maximum(np.bincount(pair, n, n_pairs), _EPS)
            prior_mean = _fit_regression(
                features, target, np.bincount(pair, n, n_pairs), regressor, seed
            )
        theta, _, iterations, converged = _pbm_em(
            pair,
            position,
            n,
            clicks,
            n_pairs,
            k,
            prior_strength=prior_strength,
            prior_mean=prior_mean,
            theta=theta,
            **settings,
        )
        total_iterations += iterations
        gamma_note = (
            f"gamma prior mean regressed on {', '.join(feature_columns)} "
            f"({max(1, regression_rounds)} rounds)"
        )
    else:
        theta, _, total_iterations, converged = _pbm_em(
            pair,
            position,
            n,
            clicks,
            n_pairs,
            k,
            prior_strength=prior_strength,
            prior_mean=None,
            theta=theta,
            **settings,
        )
        gamma_note = "gamma per pair"
    evidence = np.bincount(position, n, k).astype(np.int64)
    propensity = theta / theta[0]
    shown_at = " shown at 2+ positions" if n_informative_pairs else ""
    notes.append(
        f"regression-EM: {int(n.sum()):,} impressions in {len(n):,} (pair, position) cells of "
        f"{n_pairs:,} pairs ({', '.join(pair_columns)}){shown_at}; {gamma_note}, Beta prior "
        f"strength {prior_strength:g}, leave-one-cell-out; {total_iterations} iterations"
        + ("" if converged else " (not converged: max_iter)")
    )
    missing_positions = np.flatnonzero(evidence == 0) + 1
    if len(missing_positions):
        notes.append(
            f"regression-EM: no informative impressions at position(s) "
            f"{_ranges(missing_positions)}; their propensity is null"
        )
    known = _with_clicks(evidence > 0, np.bincount(position, clicks, k), notes)
    return PropensityEstimate(_curve(propensity, known, evidence), "regression_em", notes)


def _subsample_pairs(
    cells: _Cells, informative: np.ndarray, max_cells: int, seed: int, notes: list[str]
) -> np.ndarray:
    """Indices of the cells EM uses: the informative ones, or a seeded subset of their pairs."""
    chosen = np.flatnonzero(informative)
    if len(chosen) <= max_cells:
        return chosen
    pairs = np.unique(cells.pair[chosen])
    share = max_cells / len(chosen)
    rng = np.random.default_rng(seed)
    keep_pair = np.zeros(cells.n_pairs, dtype=bool)
    keep_pair[rng.choice(pairs, size=max(1, int(len(pairs) * share)), replace=False)] = True
    subset = chosen[keep_pair[cells.pair[chosen]]]
    notes.append(
        f"regression-EM: {len(chosen):,} informative cells exceed max_cells={max_cells:,}; "
        f"using a random {share:.1%} of their pairs (seed {seed})"
    )
    return subset


def _aggregate_cells(
    impressions: pl.DataFrame, pair_columns: tuple[str, ...], k: int, with_rows: bool
) -> _Cells:
    """(pair, position) cells with impressions and clicks, by one sort of packed int64 keys."""
    kept = None
    frame = impressions
    if int(impressions["position"].max()) > k:
        kept = (impressions["position"] <= k).to_numpy()
        frame = impressions.filter(pl.Series(kept))
    key, cardinality = _pair_codes(frame, pair_columns)
    if cardinality * k * 2 >= 2**62:  # too many distinct pairs to pack: rank them densely
        key = np.unique(key, return_inverse=True)[1].astype(np.int64)
    # Pack (pair, position, click) into the pair key in place: one int64 per row.
    packed = key
    packed *= k
    packed += frame["position"].cast(pl.Int32).to_numpy() - 1
    packed <<= 1
    packed |= (frame["click"].cast(pl.Int8).fill_null(0) > 0).to_numpy()
    if with_rows:
        order = np.argsort(packed, kind="stable")
        ordered = packed[order]
        del packed
    else:
        packed.sort()
        ordered = packed
    cell_key = ordered >> 1
    starts = np.flatnonzero(np.concatenate(([True], cell_key[1:] != cell_key[:-1])))
    n = np.diff(np.append(starts, len(ordered))).astype(np.float64)
    clicks = np.add.reduceat(ordered & 1, starts).astype(np.float64)
    cell_key = cell_key[starts]
    pair_key = cell_key // k
    new_pair = np.concatenate(([True], pair_key[1:] != pair_key[:-1]))
    pair = np.cumsum(new_pair) - 1
    row_pair = None
    if with_rows:
        cell_of_sorted = np.repeat(np.arange(len(starts)), n.astype(np.int64))
        row_pair = np.empty(len(ordered), dtype=np.int64)
        row_pair[order] = pair[cell_of_sorted]
    return _Cells(pair, cell_key % k, n, clicks, int(pair[-1]) + 1, row_pair, kept)


def _pair_codes(frame: pl.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """One int64 code per row for the combination of ``columns``, and its range."""
    key = np.zeros(frame.height, dtype=np.int64)
    cardinality = 1
    for column in columns:
        codes, size = _codes(frame[column])
        if cardinality * size >= 2**62:  # re-densify before the packed key could overflow
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            cardinality = int(key.max()) + 1
        key = key * size + codes
        cardinality *= size
    return key, cardinality


def _codes(series: pl.Series) -> tuple[np.ndarray, int]:
    """Dense-ish integer codes of a column (deterministic: they do not depend on row order)."""
    dtype = series.dtype
    if dtype.is_integer():
        values = series.fill_null(series.min() - 1 if series.null_count() else 0)
        low, high = int(values.min()), int(values.max())
        if high - low < max(4 * series.len(), 1 << 20):
            return values.to_numpy().astype(np.int64) - low, high - low + 1
    if dtype == pl.String:
        categories = series.drop_nulls().unique().sort()
        codes = series.cast(pl.Enum(categories)).to_physical().fill_null(len(categories))
        return codes.to_numpy().astype(np.int64), len(categories) + 1
    codes = series.rank("dense").fill_null(0)
    return codes.to_numpy().astype(np.int64), int(codes.max()) + 1


def _pair_features(
    impressions: pl.DataFrame,
    columns: tuple[str, ...],
    cells: _Cells,
    pair_ids: np.ndarray,
) -> np.ndarray:
    """(pairs used, features): each pair's mean of every feature column (NaN when missing)."""
    frame = impressions.select(columns)
    if cells.kept_rows is not None:
        frame = frame.filter(pl.Series(cells.kept_rows))
    out = np.full((len(pair_ids), len(columns)), np.nan)
    for i, column in enumerate(columns):
        series = frame[column]
        if not (series.dtype.is_numeric() or series.dtype == pl.Boolean):
            raise ValueError(
                f"regression-EM features must be numeric: '{column}' is {series.dtype}"
            )
        values = series.cast(pl.Float64).fill_nan(None).to_numpy()
        present = ~np.isnan(values)
        sums = np.bincount(cells.row_pair[present], values[present], cells.n_pairs)[pair_ids]
        counts = np.bincount(cells.row_pair[present], minlength=cells.n_pairs)[pair_ids]
        out[:, i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def _fit_regression(
    features: np.ndarray, target: np.ndarray, weight: np.ndarray, regressor, seed: int
) -> np.ndarray:
    """The regression step: pairs' relevance posteriors on their features, clipped to (0, 1)."""
    from sklearn.base import clone
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = (
        HistGradientBoostingRegressor(max_iter=100, min_samples_leaf=20, random_state=seed)
        if regressor is None
        else clone(regressor)
    )
    model.fit(features, target, sample_weight=weight)
    return np.clip(np.asarray(model.predict(features), dtype=np.float64), 1e-4, 1 - 1e-4)


# --------------------------------------------------------------------------- helpers


def _with_clicks(known: np.ndarray, clicks: np.ndarray, notes: list[str]) -> np.ndarray:
    """Positions with evidence but no click would get propensity 0 (infinite IPS weights):
    they are left null, and all are when position 1, the anchor, has no click."""
    silent = known & (clicks <= 0)
    if silent.any():
        notes.append(
            f"no clicks at position(s) {_ranges(np.flatnonzero(silent) + 1)} in the data used; "
            "their propensity is null"
            + ("; position 1 is the anchor, so every propensity is null" if silent[0] else "")
        )
    known = known & ~silent
    return known & known[0]


def _curve(propensity: np.ndarray, known: np.ndarray, evidence: np.ndarray) -> pl.DataFrame:
    k = len(propensity)
    return pl.DataFrame(
        {
            "position": pl.Series(np.arange(1, k + 1), dtype=pl.Int32),
            "propensity": pl.Series(
                [float(p) if ok else None for p, ok in zip(propensity, known, strict=True)],
                dtype=pl.Float64,
            ),
            "evidence": pl.Series(np.asarray(evidence, dtype=np.int64), dtype=pl.Int64),
        }
    )


def _ranges(positions: np.ndarray) -> str:
    """Positions as compact ranges: [2, 5, 6, 7] -> "2, 5-7"."""
    parts, start = [], None
    for i, p in enumerate(positions):
        if start is None:
            start = p
        if i + 1 == len(positions) or positions[i + 1] != p + 1:
            parts.append(f"{start}" if start == p else f"{start}-{p}")
            start = None
    return ", ".join(parts)
