"""Position bias: how likely a user is to examine each position, estimated from the log.

Clicks confound relevance with position: an item shown at position 1 is clicked more often
than the same item at position 8 simply because users look at position 1 more. Under the
**position-based click model** (PBM; Richardson et al. 2007, Craswell et al. 2008)::

    P(click | q, d, k) = theta_k * gamma_(q, d)

``theta_k`` is the probability that position ``k`` is examined (the *propensity*) and
``gamma_(q, d)`` the probability that product ``d`` attracts a click for query ``q`` once
examined. Debiasing (inverse-propensity weighting, click-rate labels) needs ``theta`` only up
to a constant, so every estimate here is reported **relative to position 1**
(``propensity(1) = 1.0``). Two estimators are offered, and their combination (3. below) for
logs that randomize only some positions; :func:`estimate_propensities` picks one
(``method="auto"``) or runs the one asked for. The curve's ``source`` column says, per
position, which estimator its value came from.

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

3. Interventions anchored by regression-EM (``method="auto"`` only: estimate ``"anchored"``)
----------------------------------------------------------------------------------------------
A log that randomizes only its top positions (a shuffle or swaps within 1..m) gives the
intervention estimator no evidence below m. There the combination of
:mod:`labeling.propensity_anchored` uses regression-EM, run on the whole log over all
positions, with its curve scaled onto the intervention curve by a weighted least-squares fit
of log-propensities over the positions both estimate; the positions with enough randomized
evidence keep their intervention estimates. A note says which positions came from where,
e.g. "positions 1-4 from interventions, 5-10 from regression-EM anchored on them (scale 1.028
over positions 2-4, ...)". On a position-based log with ``theta_k = 1/k`` whose randomized
half of 20k requests shuffles positions 1-4 only (``tests/labeling/test_propensity_depth.py``,
5 seeds), positions 5-10 come out 1.5-3.9% off on average (at most 8.7%), against 80-92% for
copying position 4's estimate down.

Choosing
--------
``method="auto"`` uses, when the log has ``randomized`` rows with a ``ranker_position``:

- interventions alone when every position 2..``max_position`` has at least ``min_evidence``
  moved impressions (full coverage);
- the anchored combination when some of them do (typically a prefix 2..m): interventions at
  those positions, anchored regression-EM at the others;
- regression-EM alone when none does, or the log has no interventions (the notes say why).

``method="intervention"`` stays strict: it never mixes in regression-EM, whose assumption
(relevance depends on the pair only) a user choosing interventions may not want; positions
without evidence stay null and a note says how they are filled.

A log without ``position`` cannot be debiased for position: :func:`estimate_propensities`
raises a one-line ``ValueError`` and the caller decides on a fallback. With either estimator,
a position with evidence but not a single click in the data used is null as well (its
estimate would be 0, an infinite inverse-propensity weight), and every position is null when
position 1, the anchor, has no click. :func:`impression_propensity` fills nulls from the
nearest estimated position above (``source`` ``filled``): too high, so its clicks are
under-corrected, where examination keeps falling below that position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from labeling.click_rates import position_weights
from labeling.log_counts import LogCounts, RowCounter
from labeling.propensity_anchored import _anchored_estimate
from labeling.propensity_estimate import SOURCES, PropensityEstimate, _ranges, _source_note
from labeling.propensity_intervention import _intervention_estimate, _intervention_table
from labeling.propensity_regression_em import _regression_em_estimate

__all__ = [
    "METHODS",
    "SOURCES",
    "PropensityEstimate",
    "estimate_propensities",
    "impression_propensity",
    "position_propensities",
]

METHODS = ("auto", "intervention", "regression_em")


# --------------------------------------------------------------------------- public API


def estimate_propensities(
    impressions: pl.DataFrame | RowCounter,
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
    ``feature_columns`` when given). They may also be read through a counter
    (:mod:`labeling.log_counts`; a Dask cluster's counts its partitions): the estimate is the
    same, except that ``feature_columns`` need the rows. ``max_position`` defaults to the
    largest position in the log; rows shown (or, when randomized, ranked) beyond it are left
    out. See the module docstring for the estimators and their settings.
    """
    if method not in METHODS:
        raise ValueError(f"unknown propensity method {method!r}; valid: {', '.join(METHODS)}")
    if isinstance(impressions, pl.DataFrame):
        _check_impressions(impressions)
        impressions = RowCounter(impressions)
    counter = impressions
    counts = counter.counts()
    _check_counts(counter.columns, counts)
    if not 0 < tol or max_iter < 1 or max_cells < 2 or prior_strength < 0:
        raise ValueError(
            "propensity settings: need tol > 0, max_iter >= 1, max_cells >= 2, prior_strength >= 0"
        )
    shown = counts.positions["position"]
    k = int(shown.max()) if max_position is None else int(max_position)
    if k < 1:
        raise ValueError(f"max_position must be >= 1, got {max_position}")
    if int(shown.min()) > k:
        raise ValueError(f"cannot estimate position bias: no impressions at positions 1..{k}")

    def regression_em(notes: list[str]) -> PropensityEstimate:
        return _regression_em_estimate(
            counter,
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

    notes: list[str] = []
    if method == "regression_em":
        return _with_fill_note(regression_em(notes))
    table, problem = _intervention_table(counts.interventions, k, counts.randomized_requests)
    if table is None:
        if method == "intervention":
            raise ValueError(f"cannot estimate propensities from interventions: {problem}")
        notes.append(f"auto: {problem}; using regression-EM")
        return _with_fill_note(regression_em(notes))
    if method == "intervention":
        return _with_fill_note(
            _intervention_estimate(table, notes, tol),
            "; propensity_method auto estimates such positions by regression-EM anchored on "
            "the interventions where it can",
        )
    shortest = int(table.evidence[1:].min()) if k > 1 else int(table.evidence[0])
    if shortest >= min_evidence:
        notes.append(
            f"auto: randomized requests give >= {min_evidence} moved impressions "
            f"at every position 1..{k} (fewest: {shortest}); using interventions"
        )
        return _with_fill_note(_intervention_estimate(table, notes, tol))
    intervention_notes: list[str] = []
    intervention = _intervention_estimate(table, intervention_notes, tol)
    estimated = intervention.curve["propensity"].is_not_null().to_numpy()
    trusted = (table.evidence >= min_evidence) & estimated
    trusted[0] = estimated[0]  # the anchor: position 1 needs no moved impressions
    if not trusted[0] or not trusted[1:].any():
        notes.append(
            f"auto: randomized requests give only {shortest} moved impressions at some "
            f"position (min_evidence={min_evidence}); using regression-EM"
        )
        return _with_fill_note(regression_em(notes))
    covered = np.flatnonzero(trusted[1:]) + 2
    notes.append(
        f"auto: randomized requests give >= {min_evidence} moved impressions at position(s) "
        f"{_ranges(covered)} only (fewest elsewhere: {shortest}); using interventions there "
        "and regression-EM anchored on them elsewhere"
    )
    notes += intervention_notes
    return _anchored_estimate(intervention, regression_em(notes), trusted, notes)


def impression_propensity(
    impressions: pl.DataFrame, estimate: PropensityEstimate, name: str = "propensity"
) -> pl.Series:
    """Each impression's examination propensity, in row order (``Float64``).

    A position gets its estimated propensity; positions beyond the estimated range, and
    positions the estimate left null (no evidence; ``source`` ``filled``), get the last
    estimated value before them (so every row has a propensity, position 1 being 1.0 by
    construction).
    """
    _check_impressions(impressions, need_click=False)
    return position_weights(impressions, position_propensities(estimate)).alias(name)


def position_propensities(estimate: PropensityEstimate) -> np.ndarray:
    """The propensity of positions 1..max_position, nulls filled from the position above."""
    filled = estimate.curve["propensity"].fill_null(strategy="forward").to_numpy()
    return np.where(np.isnan(filled), 1.0, filled)  # nothing estimated before: the anchor


def _with_fill_note(estimate: PropensityEstimate, hint: str = "") -> PropensityEstimate:
    """Says which positions are filled rather than estimated, where any are."""
    source = estimate.curve["source"].to_numpy()
    if (source == "filled").any():
        estimate.notes.append(_source_note(source) + hint)
    return estimate


# --------------------------------------------------------------------------- checks


def _check_impressions(impressions: pl.DataFrame, need_click: bool = True) -> None:
    _check_positions(impressions.columns, impressions.height, impressions, need_click)


def _check_counts(columns, counts: LogCounts) -> None:
    _check_positions(columns, counts.impressions, counts.positions, need_click=True)


def _check_positions(columns, height: int, positions: pl.DataFrame | None, need_click: bool):
    """One-line errors for a log (or its counts) whose positions cannot be estimated."""
    if "position" not in columns:
        raise ValueError(
            "cannot estimate position bias: the impressions have no 'position' column, so "
            "clicks cannot be debiased for position"
        )
    if need_click and "click" not in columns:
        raise ValueError("cannot estimate position bias: the impressions have no 'click' column")
    if height == 0:
        raise ValueError("cannot estimate position bias: no impressions")
    position = positions["position"]
    if not position.dtype.is_integer() or position.null_count() or position.min() < 1:
        raise ValueError(
            "cannot estimate position bias: 'position' must be integers >= 1 without nulls "
            "(validate the log first)"
        )
