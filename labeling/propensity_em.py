"""The EM core shared by both position-bias estimators (:mod:`labeling.propensity`).

Fits the position-based click model ``P(click) = theta[position] * gamma[group]`` on
(group, position) cells aggregated to impression and click counts: groups are ranker
positions for the intervention estimator, (query, product) pairs for regression-EM.
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-9


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
