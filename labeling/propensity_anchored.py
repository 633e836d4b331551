"""Interventions where the log randomized, regression-EM anchored on them everywhere else.

Logs often randomize only their top positions (randomizing deeper costs little but shows
little: few users look there). The intervention estimator (Joachims, Swaminathan & Schnabel,
WSDM 2017; Agarwal, Zaitsev, Wang, Li, Najork & Joachims, WSDM 2019) then has no evidence for
the positions below; copying the deepest estimate forward under-corrects every one of them,
since examination keeps falling. Regression-EM (Wang, Golbandi, Bendersky, Metzler & Najork,
WSDM 2018) reaches every position where the log shows (query, product) pairs at two or more
positions, but it is the less accurate of the two (see :mod:`labeling.propensity`).

The combination keeps the intervention estimate at every position it trusts and uses
regression-EM's curve for the others, rescaled onto the intervention curve: both are
relative propensities ``p(k) = theta_k / theta_1``, and regression-EM's level rests on its
own estimate at position 1, so a scale ``s`` is fitted over the positions ``O`` both
estimate (position 1 left out: both curves are 1 there by construction)::

    log s = sum_O w_k (log p_I(k) - log p_R(k)) / sum_O w_k
    w_k   = 1 / (1 / (e_I(k) p_I(k)) + 1 / (e_R(k) p_R(k)))

the weighted least-squares fit of ``log p_I(k) = log s + log p_R(k)``, with ``e`` each
estimator's evidence. Logs, because both estimators' errors are relative (a rate estimated
from ``c`` clicks has a standard error of about ``rate / sqrt(c)``), so on the log scale they
are comparable across positions; ``e p`` is proportional to the clicks behind an estimate,
so ``w_k`` is the inverse of the approximate variance of the log ratio at ``k``. This is the
minimum-variance fit when regression-EM is right up to its level; the ratio at the single
position with most evidence would waste the others, an unweighted fit would let a thinly
evidenced position count as much as a well evidenced one. The note gives the range of the
per-position ratios: under the position-based model they agree up to noise, while a trend
says regression-EM's shape is off (personalization steepens it), which the anchored values
inherit.

Per position, in order of preference: the trusted intervention estimate (``source``
``intervention``); the scaled regression-EM estimate (``regression_em_anchored``, or
``regression_em`` unscaled where no position can anchor it); an intervention estimate from
less evidence than trusted (``intervention``); else null (``filled``: impressions there take
the propensity of the nearest estimated position above).
"""

from __future__ import annotations

import numpy as np

from labeling.propensity_estimate import PropensityEstimate, _curve, _ranges, _source_note


def _anchored_estimate(
    intervention: PropensityEstimate,
    regression: PropensityEstimate,
    trusted: np.ndarray,
    notes: list[str],
) -> PropensityEstimate:
    """Intervention estimates at the ``trusted`` positions, scaled regression-EM elsewhere.

    ``trusted`` (bool per position) must mark estimated positions only, position 1 among them.
    """
    p_i = intervention.curve["propensity"].to_numpy().astype(np.float64)
    p_r = regression.curve["propensity"].to_numpy().astype(np.float64)
    e_i = intervention.curve["evidence"].to_numpy()
    e_r = regression.curve["evidence"].to_numpy()
    has_r = ~np.isnan(p_r)
    overlap = trusted & has_r
    overlap[0] = False
    if overlap.any():
        ratio = np.log(p_i[overlap] / p_r[overlap])
        weight = 1.0 / (1.0 / (e_i[overlap] * p_i[overlap]) + 1.0 / (e_r[overlap] * p_r[overlap]))
        scale = float(np.exp(np.average(ratio, weights=weight)))
        spread = np.exp([ratio.min(), ratio.max()])
        regression_source = "regression_em_anchored"
        anchoring = f"scale {scale:.3f} over positions {_ranges(np.flatnonzero(overlap) + 1)}"
        if overlap.sum() > 1:
            anchoring += f", per-position ratios {spread[0]:.3f}-{spread[1]:.3f}"
    else:
        scale, regression_source, anchoring = 1.0, "regression_em", ""
        notes.append(
            "anchored: regression-EM has no estimate at the positions interventions cover "
            "beyond position 1, so its curve is used as it is (relative to its own position 1)"
        )
    use_r = ~trusted & has_r
    use_i = trusted | (~use_r & ~np.isnan(p_i))
    propensity = np.where(use_i, p_i, scale * p_r)
    source = np.where(use_i, "intervention", regression_source)
    evidence = np.where(use_r, e_r, e_i)
    known = use_i | use_r
    curve = _curve(propensity, known, evidence, source)
    notes.append(_source_note(curve["source"].to_numpy(), anchoring))
    return PropensityEstimate(curve, "anchored", notes)
