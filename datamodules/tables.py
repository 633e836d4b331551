"""The canonical tables every dataset adapter produces, and their validation.

A search log is four polars tables (see DESIGN.md, "Canonical tables"):

- ``products``: ``product_id`` plus text columns (at least ``title``) and typed attributes;
- ``users`` (optional): ``user_id`` plus attributes;
- ``impressions``: one row per product shown in a request, with ``position`` 1-based and
  the behaviour the log recorded (``click`` always; ``add_to_cart``, ``purchase``,
  ``timestamp`` where the log has them);
- ``truth`` (simulator only): what the models must never see, kept apart.

``validate_log`` checks all of it and normalises dtypes; every problem becomes one
:class:`LogValidationError` naming the source, the column and how many rows are affected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

BEHAVIOUR_COLUMNS = ("click", "add_to_cart", "purchase")
"""Binary behaviour columns, in funnel order. Only ``click`` is required."""

REQUIRED_IMPRESSION_COLUMNS = ("request_id", "query", "product_id", "position", "click")
INTERVENTION_COLUMNS = ("randomized", "ranker_position")
"""Optional logging metadata of result randomization: whether a request's list was
randomized (0/1), and the position the logging ranker had chosen before it was. Labeling
reads them to estimate position bias; they are never features."""
REQUIRED_PRODUCT_COLUMNS = ("product_id", "title")


class LogValidationError(ValueError):
    """A search-log table is malformed. The message is one line meant for the user."""

    def __init__(
        self,
        source: str,
        column: str | None,
        problem: str,
        rows: int | None = None,
        canonical: str | None = None,
    ):
        where = f"{source}: column '{column}'" if column else source
        if column and canonical and canonical != column:  # the user's name, then the suite's
            where += f" ({canonical})"
        count = f" ({rows} row{'s' if rows != 1 else ''})" if rows is not None else ""
        super().__init__(f"{where}: {problem}{count}")
        self.source, self.column, self.problem, self.rows = source, column, problem, rows
        self.canonical = canonical or column


@dataclass
class Truth:
    """Ground truth a simulator knows and a real log does not. Only metrics may read it.

    ``relevance``: ``request_id``, ``product_id``, ``true_relevance`` (0-4).
    ``examination``: ``position``, ``examination``: the true probability that a user looks
    at the position, 1 at position 1, as estimated propensities are. Under the simulator's
    position-based model (``pbm``) it is the same in every request; under ``cascade`` and
    ``dbn`` it depends on the items above, and the column holds its mean over every request
    of the log.
    """

    relevance: pl.DataFrame
    examination: pl.DataFrame


@dataclass
class SearchLog:
    """One dataset in canonical form. ``sources`` names where each table came from."""

    products: pl.DataFrame
    impressions: pl.DataFrame
    users: pl.DataFrame | None = None
    truth: Truth | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, table: str) -> str:
        return self.sources.get(table, table)

    @property
    def behaviours(self) -> tuple[str, ...]:
        """The behaviour columns this log actually has, in funnel order."""
        return tuple(c for c in BEHAVIOUR_COLUMNS if c in self.impressions.columns)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.impressions.columns


@dataclass(frozen=True)
class LogScan:
    """A log whose impressions are read lazily, a part at a time
    (``datamodules/streamed_log.py``): products and users in memory, the impressions and
    the truth's relevance as Parquet scans, the truth's examination (one row per position)
    in memory."""

    products: pl.DataFrame
    users: pl.DataFrame | None
    impressions: pl.LazyFrame
    truth_relevance: pl.LazyFrame | None
    truth_examination: pl.DataFrame | None
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, table: str) -> str:
        return self.sources.get(table, table)


# --------------------------------------------------------------------------- validation


def validate_log(log: SearchLog) -> SearchLog:
    """Check every table of ``log`` and return it with normalised dtypes.

    Raises :class:`LogValidationError` on the first problem found.
    """
    _check_reserved_names(log)
    products = _validate_products(log.products, log.source("products"))
    users = _validate_users(log.users, log.source("users")) if log.users is not None else None
    impressions = _validate_impressions(log.impressions, log.source("impressions"))
    _check_foreign_key(impressions, products, "product_id", log.source("impressions"), "catalog")
    if users is not None and "user_id" in impressions.columns:
        known = impressions.filter(pl.col("user_id").is_not_null())
        _check_foreign_key(known, users, "user_id", log.source("impressions"), "users table")
    return SearchLog(products, impressions, users, log.truth, dict(log.sources))


RESERVED_COLUMNS = ("split", "relevance", "true_relevance", "examination")
"""Names rankbench gives columns it derives; a log may not bring its own."""


def _check_reserved_names(log: SearchLog) -> None:
    """No reserved name anywhere, and no attribute that shadows an impressions column (a
    catalog ``position`` would otherwise become a feature)."""
    impression_columns = set(log.impressions.columns)
    tables = {"impressions": log.impressions, "products": log.products}
    if log.users is not None:
        tables["users"] = log.users
    for name, table in tables.items():
        for column in table.columns:
            if column in RESERVED_COLUMNS or column.startswith("_"):
                raise LogValidationError(
                    log.source(name), column, "reserved column name; rename it", table.height
                )
            shadows = name != "impressions" and column in impression_columns
            if shadows and column not in ("product_id", "user_id"):
                raise LogValidationError(
                    log.source(name),
                    column,
                    "also an impressions column; rename one of them",
                    table.height,
                )


def _validate_products(df: pl.DataFrame, source: str) -> pl.DataFrame:
    _require_columns(df, REQUIRED_PRODUCT_COLUMNS, source)
    _require_id(df, "product_id", source)
    _require_no_nulls(df, ["product_id"], source)
    _require_text(df, "title", source)
    _require_unique(df, ["product_id"], source, "duplicate product_id")
    return df


def _validate_users(df: pl.DataFrame, source: str) -> pl.DataFrame:
    _require_columns(df, ("user_id",), source)
    _require_id(df, "user_id", source)
    _require_no_nulls(df, ["user_id"], source)
    _require_unique(df, ["user_id"], source, "duplicate user_id")
    return df


def _validate_impressions(df: pl.DataFrame, source: str) -> pl.DataFrame:
    if df.height == 0:
        raise LogValidationError(source, None, "no impressions: the table is empty")
    _require_columns(df, REQUIRED_IMPRESSION_COLUMNS, source)
    for column in ("request_id", "product_id"):
        _require_id(df, column, source)
    if "user_id" in df.columns:
        _require_id(df, "user_id", source)
    _require_no_nulls(df, ["request_id", "product_id", "position", "click"], source)
    _require_text(df, "query", source)

    df = df.with_columns(_as_integer(df, "position", source).cast(pl.Int32))
    bad = df.filter(pl.col("position") < 1).height
    if bad:
        raise LogValidationError(source, "position", "position must be 1-based (>= 1)", bad)
    _require_unique(df, ["request_id", "position"], source, "duplicate (request_id, position)")

    for column in (*BEHAVIOUR_COLUMNS, "randomized"):
        if column in df.columns:
            df = df.with_columns(_as_binary(df, column, source))
    if "ranker_position" in df.columns:
        df = df.with_columns(_as_integer(df, "ranker_position", source).cast(pl.Int32))
    if "timestamp" in df.columns:
        _require_no_nulls(df, ["timestamp"], source)
    return df


def _require_columns(df: pl.DataFrame, columns, source: str) -> None:
    for column in columns:
        if column not in df.columns:
            raise LogValidationError(
                source,
                column,
                f"required column is missing (found: {', '.join(df.columns)})",
                df.height,
            )


def _require_id(df: pl.DataFrame, column: str, source: str) -> None:
    dtype = df.schema[column]
    if not (dtype.is_integer() or dtype == pl.String):
        raise LogValidationError(
            source, column, f"ids must be integers or strings, found {dtype}", df.height
        )


def _require_no_nulls(df: pl.DataFrame, columns, source: str) -> None:
    for column in columns:
        expr = pl.col(column).is_null()
        if df.schema[column].is_float():
            expr = expr | pl.col(column).is_nan()
        missing = df.select(expr.sum()).item()
        if missing:
            raise LogValidationError(source, column, "missing values (null or NaN)", missing)


def _require_text(df: pl.DataFrame, column: str, source: str) -> None:
    if df.schema[column] != pl.String:
        raise LogValidationError(
            source, column, f"must be text, found {df.schema[column]}", df.height
        )
    empty = df.select(
        (pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")).sum()
    ).item()
    if empty:
        raise LogValidationError(source, column, "empty text", empty)


def _require_unique(df: pl.DataFrame, key: list[str], source: str, problem: str) -> None:
    duplicated = df.select(pl.struct(key).is_duplicated().sum()).item()
    if duplicated:
        raise LogValidationError(source, ", ".join(key), problem, duplicated)


def _as_integer(df: pl.DataFrame, column: str, source: str) -> pl.Expr:
    """An integer column, accepting floats that hold whole numbers ("3.0" in some logs)."""
    dtype = df.schema[column]
    if dtype.is_integer():
        return pl.col(column)
    if dtype.is_float():
        fractional = df.select((pl.col(column) % 1 != 0).sum()).item()
        if fractional:
            raise LogValidationError(source, column, "must be whole numbers", fractional)
        return pl.col(column).cast(pl.Int64)
    raise LogValidationError(source, column, f"must be integers, found {dtype}", df.height)


def _as_binary(df: pl.DataFrame, column: str, source: str) -> pl.Expr:
    """A 0/1 ``Int8`` column from booleans, integers or decimals (1.0 / 0.0, as exported logs
    write them); anything else is an error."""
    dtype = df.schema[column]
    if dtype == pl.Boolean:
        return pl.col(column).cast(pl.Int8)
    if dtype.is_integer() or dtype.is_float():
        if dtype.is_float():
            _require_no_nulls(df, [column], source)
        allowed = [0.0, 1.0] if dtype.is_float() else [0, 1]
        bad = df.select((~pl.col(column).is_in(allowed)).sum()).item()
        if bad:
            raise LogValidationError(source, column, "must be 0/1 or true/false", bad)
        return pl.col(column).cast(pl.Int8)
    raise LogValidationError(source, column, f"must be 0/1 or true/false, found {dtype}", df.height)


def _check_foreign_key(
    df: pl.DataFrame, parent: pl.DataFrame, column: str, source: str, parent_name: str
) -> None:
    if df.schema[column] != parent.schema[column]:
        raise LogValidationError(
            source,
            column,
            f"id type {df.schema[column]} does not match the {parent_name}'s "
            f"{parent.schema[column]}",
            df.height,
        )
    unknown = df.join(parent.select(column), on=column, how="anti").height
    if unknown:
        raise LogValidationError(source, column, f"ids not found in the {parent_name}", unknown)
