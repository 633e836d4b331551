"""Behaviour-aware sampling of training requests.

Most requests of a search log end with nothing; the ones with a purchase are rare and carry
the most signal. Requests are put in one stratum by the deepest thing that happened in them
(``purchase``, ``add_to_cart`` only, ``click`` only, ``nothing``), and each stratum is kept at
its own rate. Within a kept request, unclicked impressions are the negatives; at most
``negatives_per_request`` of them are kept, drawn at random (all positives always stay).
The result is a boolean mask over the impressions: it only ever selects training rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

STRATA = ("purchase", "add_to_cart", "click", "nothing")


@dataclass(frozen=True)
class SamplingConfig:
    enabled: bool = False
    purchase: float = 1.0
    add_to_cart: float = 1.0
    click: float = 1.0
    nothing: float = 0.3
    negatives_per_request: int | None = None  # None keeps every unclicked impression
    seed: int = 0

    def __post_init__(self):
        for stratum in STRATA:
            if not 0 <= getattr(self, stratum) <= 1:
                raise ValueError(f"sampling.{stratum} must be a rate between 0 and 1")
        if self.negatives_per_request is not None and self.negatives_per_request < 0:
            raise ValueError("sampling.negatives_per_request must be >= 0 or null")


def request_strata(impressions: pl.DataFrame) -> pl.DataFrame:
    """``request_id -> stratum``: the deepest behaviour seen in the request."""
    checks = [s for s in STRATA[:-1] if s in impressions.columns]
    stratum = pl.lit("nothing")
    for behaviour in reversed(checks):  # deepest last, so it wins
        stratum = pl.when(pl.col(behaviour).max() > 0).then(pl.lit(behaviour)).otherwise(stratum)
    return impressions.group_by("request_id").agg(stratum.alias("stratum"))


def sample_mask(impressions: pl.DataFrame, config: SamplingConfig) -> pl.Series:
    """True for the impressions kept for training (row order of ``impressions``)."""
    if not config.enabled:
        return pl.Series("keep", [True] * impressions.height)
    strata = request_strata(impressions)
    rates = pl.DataFrame(
        {"stratum": list(STRATA), "rate": [float(getattr(config, s)) for s in STRATA]}
    )
    draw = pl.col("request_id").hash(seed=config.seed) % 1_000_000 / 1_000_000
    kept = strata.join(rates, on="stratum").filter(draw < pl.col("rate")).select("request_id")
    rows = impressions.select("request_id", "position", "click").with_row_index("_row")
    rows = rows.with_columns(_kept=pl.col("request_id").is_in(kept["request_id"].implode()))
    if config.negatives_per_request is not None:
        # By request and position, not row number: the same draw for a part of the log.
        order = pl.struct("request_id", "position").hash(seed=config.seed + 1)
        negative_rank = order.rank("ordinal").over("request_id", pl.col("click") == 0)
        rows = rows.with_columns(
            _kept=pl.col("_kept")
            & ((pl.col("click") > 0) | (negative_rank <= config.negatives_per_request))
        )
    return rows.sort("_row")["_kept"].alias("keep")
