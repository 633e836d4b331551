"""The behavioural grade: the deepest funnel step a shown product reached in its request.

0 = no click, 1 = click, 2 = add-to-cart, 3 = purchase. Steps the log does not record
simply cannot be reached (a click-only log yields grades 0 and 1). This is the ``relevance``
task until labels derived from click rates, position bias and similarity replace it, and it
stays available afterwards as the "without relevance labels" setting.
"""

from __future__ import annotations

import polars as pl

FUNNEL = ("click", "add_to_cart", "purchase")


def behavioural_grade(impressions: pl.DataFrame, name: str = "relevance") -> pl.Series:
    """One grade per impression row, in row order, as ``Int8``."""
    steps = [column for column in FUNNEL if column in impressions.columns]
    if "click" not in steps:
        raise ValueError("behavioural_grade needs at least a 'click' column")
    # Each funnel step reached adds one grade; a purchase without a logged click still
    # counts as the deepest step reached.
    grade = pl.lit(0, dtype=pl.Int8)
    for depth, column in enumerate(steps, start=1):
        grade = pl.when(pl.col(column) > 0).then(pl.lit(depth, dtype=pl.Int8)).otherwise(grade)
    return impressions.select(grade.alias(name)).to_series()
