"""Reading a search log in canonical form from files.

A log folder holds ``products``, ``impressions`` and optionally ``users``, each as one
``.parquet``, ``.csv`` or ``.jsonl`` file or as a folder of ``.parquet`` parts (what
``rankbench simulate --out`` writes). Columns must already carry the canonical names of
DESIGN.md. Every error names the file it came from.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datamodules.tables import LogScan, LogValidationError, SearchLog, Truth, validate_log

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")


def read_log_dir(path: str | Path, with_truth: bool = True) -> SearchLog:
    """Read and validate the canonical tables in ``path``."""
    folder = Path(path)
    if not folder.is_dir():
        raise LogValidationError(str(folder), None, "log folder not found")
    sources, tables = {}, {}
    for name in ("products", "impressions", "users"):
        location = _find_table(folder, name)
        if location is None:
            if name == "users":
                continue
            raise LogValidationError(
                str(folder), None, f"no {name} table ({name}.parquet, .csv, .jsonl or folder)"
            )
        sources[name] = str(location)
        tables[name] = read_table(location)
    truth = _read_truth(folder) if with_truth else None
    log = SearchLog(
        products=tables["products"],
        impressions=tables["impressions"],
        users=tables.get("users"),
        truth=truth,
        sources=sources,
    )
    return validate_log(log)


def scan_log_dir(path: str | Path) -> LogScan:
    """The canonical tables in ``path`` with the impressions (and the truth's relevance) as
    lazy Parquet scans, read a part at a time by :class:`datamodules.streamed_log.LogParts`;
    products and users are read whole. Validation happens as the parts are read."""
    folder = Path(path)
    if not folder.is_dir():
        raise LogValidationError(str(folder), None, "log folder not found")
    impressions = _find_table(folder, "impressions")
    if impressions is None:
        raise LogValidationError(str(folder), None, "no impressions table (.parquet or folder)")
    products = _find_table(folder, "products")
    if products is None:
        raise LogValidationError(str(folder), None, "no products table (.parquet, .csv, .jsonl)")
    users = _find_table(folder, "users")
    relevance = _find_table(folder, "truth_relevance")
    examination = _find_table(folder, "truth_examination")
    has_truth = relevance is not None and examination is not None
    return LogScan(
        products=read_table(products),
        users=read_table(users) if users is not None else None,
        impressions=_scan_parquet(impressions),
        truth_relevance=_scan_parquet(relevance) if has_truth else None,
        truth_examination=read_table(examination) if has_truth else None,
        sources={"products": str(products), "impressions": str(impressions)}
        | ({"users": str(users)} if users is not None else {}),
    )


def _scan_parquet(location: Path) -> pl.LazyFrame:
    parts = sorted(location.glob("*.parquet")) if location.is_dir() else [location]
    if location.suffix != ".parquet" and not location.is_dir():
        raise LogValidationError(
            str(location),
            None,
            "data.part_rows reads Parquet only (a .parquet file or a folder of parts); "
            "convert the table or leave data.part_rows unset",
        )
    if not parts:
        raise LogValidationError(str(location), None, "folder holds no .parquet parts")
    return pl.scan_parquet(parts)


def _find_table(folder: Path, name: str) -> Path | None:
    if (folder / name).is_dir():
        return folder / name
    for suffix in TABLE_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def read_table(location: Path) -> pl.DataFrame:
    """One table from a file or a folder of parquet parts, with a one-line error if unreadable."""
    try:
        if location.is_dir():
            parts = sorted(location.glob("*.parquet"))
            if not parts:
                raise LogValidationError(str(location), None, "folder holds no .parquet parts")
            return pl.read_parquet(parts)
        if location.stat().st_size == 0:
            raise LogValidationError(str(location), None, "the file is empty", 0)
        if location.suffix == ".parquet":
            return pl.read_parquet(location)
        if location.suffix == ".csv":
            return pl.read_csv(location, infer_schema_length=10_000)
        if location.suffix == ".jsonl":
            return pl.read_ndjson(location)
    except LogValidationError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise LogValidationError(str(location), None, f"cannot be read: {first_line}") from None
    raise LogValidationError(str(location), None, f"unsupported format {location.suffix!r}")


def _read_truth(folder: Path) -> Truth | None:
    relevance = _find_table(folder, "truth_relevance")
    examination = _find_table(folder, "truth_examination")
    if relevance is None or examination is None:
        return None
    truth = Truth(relevance=read_table(relevance), examination=read_table(examination))
    _check_truth_table(
        truth.relevance, str(relevance), ("request_id", "product_id"), "true_relevance"
    )
    _check_truth_table(truth.examination, str(examination), ("position",), "examination")
    return truth


def _check_truth_table(table: pl.DataFrame, source: str, key: tuple[str, ...], value: str):
    for column in (*key, value):
        if column not in table.columns:
            raise LogValidationError(source, column, "required column is missing", table.height)
    duplicated = table.select(pl.struct(list(key)).is_duplicated().sum()).item()
    if duplicated:
        raise LogValidationError(source, ", ".join(key), "duplicate keys", duplicated)
