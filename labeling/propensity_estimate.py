"""The result of position-bias estimation and the helpers the estimators build it with.

:class:`PropensityEstimate` holds the relative propensity curve (position 1 = 1.0) and, per
position, the estimator its value came from; the helpers turn an estimator's raw propensities
into that curve: positions without evidence or without a click are null (see
:mod:`labeling.propensity` for the estimators and these rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

# Where a position's propensity came from, in the order the notes list them.
SOURCES = ("intervention", "regression_em", "regression_em_anchored", "filled")
_SOURCE_TEXT = {
    "intervention": "from interventions",
    "regression_em": "from regression-EM",
    "regression_em_anchored": "from regression-EM anchored on them",
    "filled": "not estimated (their impressions take the propensity of the nearest "
    "estimated position above)",
}


@dataclass
class PropensityEstimate:
    """Relative examination propensity per position (position 1 = 1.0).

    ``curve``: ``position`` (Int32, 1..max_position), ``propensity`` (Float64, null where the
    log holds no evidence for that position), ``evidence`` (Int64, of the estimator named in
    ``source``; see :mod:`labeling.propensity`), ``source`` (String, one of :data:`SOURCES`:
    ``"filled"`` where ``propensity`` is null, so that :func:`impression_propensity
    <labeling.propensity.impression_propensity>` fills it from the position above).
    ``method``: the estimator that produced it, ``"intervention"``, ``"regression_em"`` or
    ``"anchored"`` (interventions where they have evidence, regression-EM scaled onto them
    elsewhere; :mod:`labeling.propensity_anchored`).
    ``notes``: what a user should know (why this method, data used, convergence, gaps).
    """

    curve: pl.DataFrame
    method: str
    notes: list[str] = field(default_factory=list)

    @property
    def max_position(self) -> int:
        return int(self.curve["position"].max())


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


def _curve(
    propensity: np.ndarray, known: np.ndarray, evidence: np.ndarray, source: str | np.ndarray
) -> pl.DataFrame:
    """The curve table; ``source`` names the estimator of each known position (or of all)."""
    k = len(propensity)
    source = np.where(known, np.broadcast_to(np.asarray(source, dtype=object), (k,)), "filled")
    return pl.DataFrame(
        {
            "position": pl.Series(np.arange(1, k + 1), dtype=pl.Int32),
            "propensity": pl.Series(
                [float(p) if ok else None for p, ok in zip(propensity, known, strict=True)],
                dtype=pl.Float64,
            ),
            "evidence": pl.Series(np.asarray(evidence, dtype=np.int64), dtype=pl.Int64),
            "source": pl.Series(source.tolist(), dtype=pl.String),
        }
    )


def _source_note(source: np.ndarray, anchoring: str = "") -> str:
    """Which positions came from where, in one line, e.g. "positions 1-4 from interventions,
    5-10 from regression-EM anchored on them (scale 0.93 over positions 2-4)"."""
    parts = []
    for name in SOURCES:
        where = np.flatnonzero(np.asarray(source) == name) + 1
        if len(where):
            detail = f" ({anchoring})" if anchoring and name == "regression_em_anchored" else ""
            parts.append(f"{_ranges(where)} {_SOURCE_TEXT[name]}{detail}")
    return "positions " + ", ".join(parts)


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
