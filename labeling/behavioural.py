"""The behavioural grade: the deepest funnel step a shown product reached in its request.

0 = no click, 1 = click, 2 = add-to-cart, 3 = purchase. Steps the log does not record
simply cannot be reached (a click-only log yields grades 0 and 1; a log of clicks and
purchases, grades 0, 1 and 3). This is the ``relevance``
task until labels derived from click rates, position bias and similarity replace it, and it
stays available afterwards as the "without relevance labels" setting.
"""

from __future__ import annotations

import polars as pl

FUNNEL = ("click", "add_to_cart", "purchase")


def behavioural_grade(impressions: pl.DataFrame, name: str = "relevance") -> pl.Series:
    """One grade per impression row, in row order, as ``Int8``."""
    if "click" not in impressions.columns:
        raise ValueError("behavioural_grade needs at least a 'click' column")
    # Each step has its fixed grade, so a purchase is 3 whether or not the log records carts;
    # the deepest step reached wins.
    grade = pl.lit(0, dtype=pl.Int8)
    for depth, column in enumerate(FUNNEL, start=1):
        if column in impressions.columns:
            grade = pl.when(pl.col(column) > 0).then(pl.lit(depth, dtype=pl.Int8)).otherwise(grade)
    return impressions.select(grade.alias(name)).to_series()
