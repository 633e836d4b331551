"""A search log in your own files, described by a YAML mapping.

The mapping says where each table is (CSV, TSV, Parquet or JSON lines, plain or gzipped CSV),
which of its columns plays which canonical role, and how values are written::

    # my_log.yaml (paths are relative to this file)
    impressions:
      path: clicks.csv
      delimiter: ";"              # CSV only; default "," (tab for .tsv)
      columns:                    # canonical name: your column
        request_id: session
        query: search_term
        product_id: sku
        position: rank
        click: clicked
        user_id: customer         # optional, like add_to_cart, purchase, timestamp
      position_base: 0            # your first position is 0 (default 1)
    products:
      path: catalog.parquet
      columns: {product_id: sku, title: name, description: blurb}
      attributes: [price, brand]  # more columns, kept under their own names
    users:                        # optional
      path: customers.jsonl
      columns: {user_id: id}
      attributes: [segment]
    booleans:                     # how click / add_to_cart / purchase are written
      true_values: ["True", "true", "1", "yes"]
      false_values: ["False", "false", "0", "no"]
    ids:                          # ids written without their leading zeros somewhere
      product_id: {zero_pad: 12}

Ids are read as text (zero-padded where asked), so ``00042`` and ``42`` are never confused.
CSV attributes whose every value is a number become numeric features, the others
categorical. What the mapping does not name (users, add-to-cart, purchase, timestamps, a
description, prices) is absent: the tasks and features that need it are skipped.

Every problem ends in one :class:`~datamodules.tables.LogValidationError` naming the file,
the column and the number of rows, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from datamodules.tables import LogValidationError, SearchLog, validate_log

TABLES = ("impressions", "products", "users")
ROLES = {
    "impressions": {
        "required": ("request_id", "query", "product_id", "position", "click"),
        "optional": (
            "user_id",
            "add_to_cart",
            "purchase",
            "timestamp",
            # Interventions: which requests showed a randomized order, and where the
            # production ranker had put each item (position_base applies to it too).
            "randomized",
            "ranker_position",
        ),
    },
    "products": {"required": ("product_id", "title"), "optional": ("description",)},
    "users": {"required": ("user_id",), "optional": ()},
}
ID_COLUMNS = ("request_id", "product_id", "user_id")
BOOLEAN_COLUMNS = ("click", "add_to_cart", "purchase", "randomized")
POSITION_COLUMNS = ("position", "ranker_position")
TEXT_COLUMNS = ("query", "title", "description")
DEFAULT_TRUE = ("true", "True", "TRUE", "1", "yes", "y")
DEFAULT_FALSE = ("false", "False", "FALSE", "0", "no", "n")
TABLE_KEYS = {"path", "delimiter", "columns", "attributes", "position_base"}
MAPPING_KEYS = {*TABLES, "booleans", "ids"}
DELIMITER_HINTS = (";", "\t", "|", ",")


@dataclass(frozen=True)
class TableMapping:
    path: Path
    columns: dict[str, str]  # canonical name -> the file's column
    attributes: tuple[str, ...] = ()
    delimiter: str | None = None
    position_base: int = 1


@dataclass(frozen=True)
class LogMapping:
    source: str  # the mapping file, for messages
    tables: dict[str, TableMapping]
    true_values: tuple[str, ...] = DEFAULT_TRUE
    false_values: tuple[str, ...] = DEFAULT_FALSE
    zero_pad: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- the mapping


def load_mapping(path: str | Path) -> LogMapping:
    """Read and check a mapping file; paths in it are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise LogValidationError(str(path), None, "mapping file not found")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise LogValidationError(str(path), None, f"not valid YAML ({first})") from None
    if not isinstance(content, dict):
        raise LogValidationError(str(path), None, "expected a mapping of tables")
    _no_unknown_keys(content, MAPPING_KEYS, str(path), "")
    for table in ("impressions", "products"):
        if table not in content:
            raise LogValidationError(str(path), None, f"no '{table}' table in the mapping")
    tables = {name: _table_mapping(content[name], name, path) for name in TABLES if name in content}
    booleans = content.get("booleans") or {}
    _no_unknown_keys(booleans, {"true_values", "false_values"}, str(path), "booleans.")
    return LogMapping(
        source=str(path),
        tables=tables,
        true_values=tuple(str(v) for v in booleans.get("true_values", DEFAULT_TRUE)),
        false_values=tuple(str(v) for v in booleans.get("false_values", DEFAULT_FALSE)),
        zero_pad=_zero_pad(content.get("ids") or {}, str(path)),
    )


def _no_unknown_keys(section: dict, known: set, source: str, prefix: str) -> None:
    if not isinstance(section, dict):
        raise LogValidationError(source, None, f"{prefix.rstrip('.')} must be a mapping")
    unknown = sorted(map(str, set(section) - known))
    if unknown:
        raise LogValidationError(
            source,
            None,
            f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; "
            f"expected {', '.join(sorted(prefix + k for k in known))}",
        )


def _table_mapping(section, name: str, mapping_path: Path) -> TableMapping:
    source = str(mapping_path)
    _no_unknown_keys(section, TABLE_KEYS, source, f"{name}.")
    if "path" not in section:
        raise LogValidationError(source, None, f"{name}.path is missing")
    columns = section.get("columns") or {}
    _no_unknown_keys(
        columns,
        set(ROLES[name]["required"]) | set(ROLES[name]["optional"]),
        source,
        f"{name}.columns.",
    )
    roles = {role: str(column) for role, column in columns.items()}
    for role in ROLES[name]["required"]:
        roles.setdefault(role, role)  # a column already named canonically needs no entry
    base = section.get("position_base", 1)
    if base not in (0, 1):
        raise LogValidationError(source, None, f"{name}.position_base must be 0 or 1, not {base!r}")
    return TableMapping(
        path=(mapping_path.parent / str(section["path"])).resolve(),
        columns=roles,
        attributes=tuple(str(a) for a in section.get("attributes") or ()),
        delimiter=section.get("delimiter"),
        position_base=int(base),
    )


def _zero_pad(ids: dict, source: str) -> dict[str, int]:
    _no_unknown_keys(ids, set(ID_COLUMNS), source, "ids.")
    widths = {}
    for column, setting in ids.items():
        width = (setting or {}).get("zero_pad") if isinstance(setting, dict) else None
        if not isinstance(width, int) or width < 1:
            raise LogValidationError(
                source, None, f"ids.{column}.zero_pad must be a positive integer"
            )
        widths[column] = width
    return widths


# --------------------------------------------------------------------------- reading


def read_mapped_log(path: str | Path) -> SearchLog:
    """The canonical, validated tables of the files a mapping describes."""
    mapping = load_mapping(path)
    tables, sources = {}, {}
    for name, table in mapping.tables.items():
        tables[name] = _canonical_table(name, table, mapping)
        sources[name] = str(table.path)
    log = SearchLog(
        products=tables["products"],
        impressions=tables["impressions"],
        users=tables.get("users"),
        sources=sources,
    )
    try:
        return validate_log(log)
    except LogValidationError as error:  # name the file's column beside the suite's
        table = next((t for t in mapping.tables.values() if str(t.path) == error.source), None)
        yours = table.columns.get(error.column) if table is not None else None
        if yours is None or yours == error.column:
            raise
        raise LogValidationError(
            error.source, yours, error.problem, error.rows, canonical=error.column
        ) from None


def read_file(path: Path, delimiter: str | None = None) -> pl.DataFrame:
    """A table from CSV/TSV (all columns as text), Parquet or JSON lines."""
    source = str(path)
    if not path.is_file():
        raise LogValidationError(source, None, "file not found")
    if path.stat().st_size == 0:
        raise LogValidationError(source, None, "the file is empty", 0)
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".parquet":
            table = pl.read_parquet(path)
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            table = pl.read_ndjson(path)
        elif any(suffixes.endswith(s) for s in (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".txt")):
            default = "\t" if ".tsv" in suffixes else ","
            table = pl.read_csv(
                path.read_bytes() if path.suffix == ".gz" else path,
                separator=delimiter or default,
                infer_schema=False,  # every column as text: types are decided per role
            )
        else:
            raise LogValidationError(source, None, f"unsupported file type {path.suffix!r}")
    except LogValidationError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise LogValidationError(source, None, f"cannot be read: {first}") from None
    if table.height == 0:
        raise LogValidationError(source, None, "no rows (only a header)", 0)
    return table


def _canonical_table(name: str, table: TableMapping, mapping: LogMapping) -> pl.DataFrame:
    raw = read_file(table.path, table.delimiter)
    source = str(table.path)
    wanted = {**table.columns, **{a: a for a in table.attributes}}
    for role, column in wanted.items():
        if column not in raw.columns:
            raise LogValidationError(
                source, column, _missing_column_problem(role, column, raw), raw.height
            )
    out = raw.select([pl.col(column).alias(role) for role, column in wanted.items()])
    conversions = []
    for role in table.columns:
        try:
            conversions.append(_convert(out, role, table, mapping, source).alias(role))
        except LogValidationError as error:  # name the file's column beside the suite's
            raise LogValidationError(
                source, wanted[role], error.problem, error.rows, canonical=role
            ) from None
    conversions += [_attribute(out, a, source).alias(a) for a in table.attributes]
    return out.with_columns(conversions)


def _missing_column_problem(role: str, column: str, raw: pl.DataFrame) -> str:
    named = f"column for {role} not found" if role != column else "required column not found"
    found = ", ".join(raw.columns[:8]) + (", ..." if raw.width > 8 else "")
    problem = f"{named} (found: {found})"
    if raw.width == 1 and any(d in raw.columns[0] for d in DELIMITER_HINTS):
        problem += "; one column only: wrong delimiter? set the table's `delimiter`"
    return problem


def _convert(df: pl.DataFrame, role: str, table: TableMapping, mapping: LogMapping, source: str):
    if role in ID_COLUMNS:
        return _id(df, role, mapping.zero_pad.get(role))
    if role in POSITION_COLUMNS:
        written = _integer(df, role, source)
        position = written + (1 - table.position_base)
        below = df.select((position < 1).sum()).item()
        if below:
            hint = (
                "; this file's positions start at 0: set `position_base: 0` for the table"
                if table.position_base == 1 and df.select(written.min()).item() == 0
                else ""
            )
            raise LogValidationError(source, role, f"positions must be 1 or more{hint}", below)
        return position
    if role in BOOLEAN_COLUMNS:
        return _boolean(df, role, mapping, source)
    if role == "timestamp":
        return _timestamp(df, role, source)
    if role in TEXT_COLUMNS:
        return pl.col(role).cast(pl.String)
    return pl.col(role)


def _id(df: pl.DataFrame, column: str, width: int | None) -> pl.Expr:
    text = pl.col(column).cast(pl.String).str.strip_chars()
    if df.schema[column].is_float():  # 42.0 from a float column is the id 42
        text = pl.col(column).cast(pl.Int64, strict=False).cast(pl.String)
    return text.str.zfill(width) if width else text


def _failed_cast(df: pl.DataFrame, column: str, converted: pl.Expr) -> int:
    return df.select((pl.col(column).is_not_null() & converted.is_null()).sum()).item()


def _integer(df: pl.DataFrame, column: str, source: str) -> pl.Expr:
    dtype = df.schema[column]
    as_float = pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    if dtype.is_numeric():
        as_float = pl.col(column).cast(pl.Float64)
    bad = _failed_cast(df, column, as_float)
    if bad:
        raise LogValidationError(source, column, "mixed types: values that are not numbers", bad)
    fractional = df.select((as_float % 1 != 0).sum()).item()
    if fractional:
        raise LogValidationError(source, column, "must be whole numbers", fractional)
    return as_float.cast(pl.Int64)


def _boolean(df: pl.DataFrame, column: str, mapping: LogMapping, source: str) -> pl.Expr:
    """0/1 from the mapping's true and false words, booleans, or numbers 1 and 0 however
    written (1, 1.0, "1.0")."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    value = (
        pl.when(text.is_in(mapping.true_values))
        .then(pl.lit(1, pl.Int8))
        .when(text.is_in(mapping.false_values))
        .then(pl.lit(0, pl.Int8))
        .when(number == 1.0)
        .then(pl.lit(1, pl.Int8))
        .when(number == 0.0)
        .then(pl.lit(0, pl.Int8))
    )
    bad = _failed_cast(df, column, value)
    if bad:
        allowed = ", ".join(repr(v) for v in (*mapping.true_values, *mapping.false_values))
        raise LogValidationError(
            source,
            column,
            f"values that are neither true nor false (allowed: {allowed}; set `booleans`)",
            bad,
        )
    return value


def _timestamp(df: pl.DataFrame, column: str, source: str) -> pl.Expr:
    if df.schema[column].is_temporal():
        return pl.col(column)
    parsed = pl.col(column).cast(pl.String).str.to_datetime(strict=False)
    bad = _failed_cast(df, column, parsed)
    if bad:
        raise LogValidationError(source, column, "values that are not dates and times", bad)
    return parsed


def _attribute(df: pl.DataFrame, column: str, source: str) -> pl.Expr:
    """Text columns (CSV) whose every value is a number become numbers; others stay text."""
    if df.schema[column] != pl.String:
        return pl.col(column)
    as_number = pl.col(column).str.strip_chars().replace("", None).cast(pl.Float64, strict=False)
    if _failed_cast(df.with_columns(pl.col(column).replace("", None)), column, as_number):
        return pl.col(column)
    return as_number
