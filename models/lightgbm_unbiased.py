"""Position-debiased LambdaMART on raw clicks: LightGBM's ``lambdarank`` given the logged
positions (``lgb.Dataset(position=...)``, LightGBM >= 4.1).

Instead of debiasing clicks into labels first (``labeling/``), this ranker trains on the
clicks themselves and lets LightGBM explain the position bias inside the objective: each
row's score is split into a relevance part and a learned factor per logged position,
``s(x, pos) = f(x) + g(pos)`` (a generalised additive model, LightGBM's "position bias
treatment"); both are fitted by LambdaMART on the clicks, and only ``f`` scores at
prediction time. ``lambdarank_position_bias_regularization`` shrinks the factors ``g``.

LightGBM reads the positions from that field (XGBoost's ``lambdarank_unbiased`` reads them
from the row order), so the rows stay in the split's seeded order: in the shown order, the
first round, where every score ties, would weigh the pairs as the logging ranker ordered them
(trained that way, it stopped after one round and ranked worse on the tiny and ci presets).

It needs a click log with logged positions; a judged dataset (no clicks) is refused with one
line. It stops early on the validation split's click NDCG@10, so nothing debiased by the
suite reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.base import register
from models.lightgbm_ranker import LightGBMRanker


@register("lightgbm_unbiased")
class LightGBMUnbiasedRanker(LightGBMRanker):
    # LightGBM sums the position factors' derivatives in per-thread buffers filled in OpenMP's
    # dynamic (guided) order, so their last bits may depend on the thread count (measured the
    # same on the tiny and ci presets, but not guaranteed): records are keyed by the count.
    thread_independent = False

    @dataclass(frozen=True)
    class Settings(LightGBMRanker.Settings):
        target: str = "click"  # raw clicks, not the derived labels
        # LightGBM's default: no shrinkage of the estimated position factors.
        lambdarank_position_bias_regularization: float = 0.0

    def dataset_fields(self, train) -> dict[str, Any]:
        """The logged position of every training row, in row order."""
        return {"position": train.position}
