"""Judged datasets: graded relevance given by people, instead of a click log.

LETOR / SVMlight files, the Amazon Shopping Queries data set (ESCI) and Wayfair's WANDS
grade (query, product) pairs by hand. Their adapters produce the canonical tables with two
differences from a search log:

- ``impressions`` has a ``judgment`` column (the graded label, a number >= 0) and no
  ``click`` (nor add-to-cart or purchase); its ``position`` is the pair's order in the
  dataset's files (1-based), which is never a feature;
- ``impressions`` may have a ``dataset_split`` column (``train`` / ``val`` / ``test``) when
  the dataset comes split: the DataModule then keeps that split, drawing a validation part
  from the training requests (``split.val_fraction``, ``split.seed``) when it has none.
  Without it, requests are split at random as usual.

The ``relevance`` task is then the judgment itself (no labels are derived), the only task;
``products`` may lack a ``title`` (LETOR has only numeric features), in which case the text
features are turned off. :func:`validate_judged_log` checks the tables, with the same
one-line errors as :func:`~datamodules.tables.validate_log`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from datamodules.splits import SPLITS, SplitConfig, assign_splits
from datamodules.tables import (
    LogValidationError,
    SearchLog,
    _check_foreign_key,
    _require_columns,
    _require_id,
    _require_no_nulls,
    _require_text,
    _require_unique,
)

JUDGMENT = "judgment"
GIVEN_SPLIT = "dataset_split"
REQUIRED = ("request_id", "query", "product_id", "position", JUDGMENT)


def is_judged(log: SearchLog) -> bool:
    return JUDGMENT in log.impressions.columns


def validate_judged_log(log: SearchLog) -> SearchLog:
    """Check a judged dataset's tables and return them with normalised dtypes."""
    source = log.source("impressions")
    impressions = log.impressions
    if impressions.height == 0:
        raise LogValidationError(source, None, "no judged pairs: the table is empty")
    _require_columns(impressions, REQUIRED, source)
    for column in ("request_id", "product_id"):
        _require_id(impressions, column, source)
    _require_no_nulls(impressions, ["request_id", "product_id", "position", JUDGMENT], source)
    _require_text(impressions, "query", source)
    if not impressions.schema[JUDGMENT].is_numeric():
        raise LogValidationError(source, JUDGMENT, "judgments must be numbers", impressions.height)
    negative = impressions.filter(pl.col(JUDGMENT) < 0).height
    if negative:
        raise LogValidationError(source, JUDGMENT, "judgments must be >= 0", negative)
    _require_unique(
        impressions, ["request_id", "position"], source, "duplicate (request, position)"
    )
    if GIVEN_SPLIT in impressions.columns:
        unknown = impressions.filter(~pl.col(GIVEN_SPLIT).is_in(list(SPLITS))).height
        if unknown:
            raise LogValidationError(
                source, GIVEN_SPLIT, f"split names must be {', '.join(SPLITS)}", unknown
            )
    products_source = log.source("products")
    _require_columns(log.products, ("product_id",), products_source)
    _require_id(log.products, "product_id", products_source)
    _require_unique(log.products, ["product_id"], products_source, "duplicate product_id")
    if "title" in log.products.columns:
        _require_text(log.products, "title", products_source)
    _check_foreign_key(impressions, log.products, "product_id", source, "catalog")
    impressions = impressions.with_columns(
        pl.col("position").cast(pl.Int32), pl.col(JUDGMENT).cast(pl.Float64)
    )
    return SearchLog(log.products, impressions, log.users, None, dict(log.sources))


def judged_assignment(impressions: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """``request_id -> split``: the dataset's own split where it has one, else at random."""
    if GIVEN_SPLIT not in impressions.columns:
        return assign_splits(impressions.drop(JUDGMENT), config)
    given = impressions.group_by("request_id").agg(
        pl.col(GIVEN_SPLIT).first().alias("split"), pl.col(GIVEN_SPLIT).n_unique().alias("_n")
    )
    mixed = given.filter(pl.col("_n") > 1).height
    if mixed:
        raise LogValidationError(
            "impressions", GIVEN_SPLIT, "a request's rows are in more than one split", mixed
        )
    given = given.drop("_n").sort("request_id")
    if "val" not in given["split"]:
        given = _validation_from_train(given, config)
    for part in ("train", "test"):
        if part not in given["split"]:
            raise LogValidationError("impressions", GIVEN_SPLIT, f"no {part} requests", 0)
    return given


def _validation_from_train(given: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """Move a seeded ``val_fraction`` of the training requests to validation."""
    train = given.filter(pl.col("split") == "train")["request_id"]
    n_val = max(1, round(train.len() * config.val_fraction))
    chosen = train.gather(np.random.default_rng(config.seed).permutation(train.len())[:n_val])
    return given.with_columns(
        pl.when(pl.col("request_id").is_in(chosen.implode()))
        .then(pl.lit("val"))
        .otherwise(pl.col("split"))
        .alias("split")
    )


# --------------------------------------------------------------------------- adapters' helpers


def label_gains(dataset: str, defaults: dict[str, float], given: dict | None) -> dict[str, float]:
    """A dataset's label -> gain map: ``defaults`` with the labels ``given`` names replaced."""
    if given is not None and not isinstance(given, dict):
        raise ValueError(f"{dataset}: gains must map labels to numbers, e.g. {defaults}")
    given = dict(given or {})
    unknown = sorted(map(str, set(given) - set(defaults)))
    if unknown:
        raise ValueError(
            f"{dataset}: gains for unknown label(s) {', '.join(unknown)}; "
            f"the labels are {', '.join(defaults)}"
        )
    for label, gain in given.items():
        if isinstance(gain, bool) or not isinstance(gain, int | float) or gain < 0:
            raise ValueError(f"{dataset}: the gain of {label} must be a number >= 0, got {gain!r}")
    return {**defaults, **{label: float(gain) for label, gain in given.items()}}


def graded(labels: pl.Series, gains: dict[str, float], source: str) -> pl.Series:
    """Each text label's gain; an unknown or missing label is an error counting them."""
    unknown = labels.is_null() | ~labels.is_in(list(gains))
    if unknown.any():
        found = ", ".join(sorted(map(str, labels.filter(unknown).unique().to_list())))
        raise LogValidationError(
            source,
            labels.name,
            f"unknown labels ({found}); expected {', '.join(gains)}",
            int(unknown.sum()),
        )
    return labels.replace_strict(gains, return_dtype=pl.Float64).alias(JUDGMENT)


def blank_to_null(column: str) -> pl.Expr:
    """Stripped text, with empty text as missing."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text).alias(column)


def drop_untitled(
    products: pl.DataFrame, pairs: pl.DataFrame, notes: list[str], source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Drop products without a title, and the pairs of products not in the titled catalog
    (they could be neither featurised nor ranked by text); ``notes`` says how many."""
    untitled = products.filter(pl.col("title").is_null()).height
    if untitled:
        notes.append(f"{_count(untitled, 'product')} without a title dropped")
        products = products.filter(pl.col("title").is_not_null())
    kept = pairs.join(
        products.select("product_id"), on="product_id", how="semi", maintain_order="left"
    )
    if kept.height < pairs.height:
        dropped = _count(pairs.height - kept.height, "judged pair")
        notes.append(f"{dropped} whose product has no titled catalog entry dropped")
    if kept.height == 0:
        raise LogValidationError(source, "product_id", "no judged pair has a titled product", 0)
    return products, kept


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
