"""RetroTech: a real electronics/media catalog with a third-party click log.

The folder (``products.csv.gz`` and ``sessions/*.csv.gz``, see its README) becomes the
canonical tables: a request per session (ids made unique across the per-query files), the
0-based float ``rank`` as a 1-based ``position``, UPCs zero-padded to 12 digits, and
``clicked`` as ``click``. The log has no users, add-to-carts, purchases or timestamps: those
tasks and features are simply absent. Two things of the data itself are handled and reported
in ``notes``: products listed twice in the catalog (the first listing is kept), and
impressions of products the catalog lacks (dropped, as they have no title to label or rank).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import polars as pl

from datamodules.tables import LogValidationError, SearchLog

SESSION_COLUMNS = ("sess_id", "query", "rank", "clicked_doc_id", "clicked")
REQUESTS_PER_FILE = 1_000_000_000  # request_id = file index * this + sess_id


def read_retrotech(folder: str | Path) -> tuple[SearchLog, list[str]]:
    folder = Path(folder)
    products_file = folder / "products.csv.gz"
    session_files = sorted((folder / "sessions").glob("*.csv.gz"))
    if not products_file.is_file():
        raise LogValidationError(str(products_file), None, "RetroTech catalog not found")
    if not session_files:
        raise LogValidationError(str(folder / "sessions"), None, "no session files (*.csv.gz)")
    notes: list[str] = []
    products = _read_products(products_file, notes)
    impressions = pl.concat([_read_sessions(f, i) for i, f in enumerate(session_files)])
    unknown = impressions.join(products.select("product_id"), on="product_id", how="anti")
    if unknown.height:
        notes.append(
            f"{unknown['product_id'].n_unique()} products shown in {unknown.height} "
            "impressions are missing from the catalog: those impressions are dropped"
        )
        impressions = impressions.join(products.select("product_id"), on="product_id", how="semi")
    sources = {"products": str(products_file), "impressions": str(folder / "sessions")}
    return SearchLog(products=products, impressions=impressions, sources=sources), notes


def _read_products(path: Path, notes: list[str]) -> pl.DataFrame:
    # The file escapes quotes with a backslash (\"), which CSV readers that follow RFC 4180
    # reject; the standard library's reader is told so.
    with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, escapechar="\\", doublequote=False)
        header = next(reader)
        rows = list(reader)
    table = pl.DataFrame(rows, schema=header, orient="row")
    products = table.select(
        pl.col("upc").str.strip_chars().str.zfill(12).alias("product_id"),
        pl.col("name").str.strip_chars().alias("title"),
        pl.col("short_description").str.strip_chars().alias("description"),
        pl.col("manufacturer").str.strip_chars().replace("", None).alias("brand"),
    ).filter(pl.col("title") != "")
    duplicated = products.height - products["product_id"].n_unique()
    if duplicated:
        notes.append(f"{duplicated} catalog rows repeat a UPC: the first listing is kept")
        products = products.unique("product_id", keep="first", maintain_order=True)
    return products


def _read_sessions(path: Path, index: int) -> pl.DataFrame:
    table = pl.read_csv(path, schema_overrides={"clicked": pl.String})
    missing = [c for c in SESSION_COLUMNS if c not in table.columns]
    if missing:
        raise LogValidationError(str(path), missing[0], "required column is missing", table.height)
    return table.select(
        (pl.col("sess_id").cast(pl.Int64) + index * REQUESTS_PER_FILE).alias("request_id"),
        pl.col("query").cast(pl.String),
        pl.col("clicked_doc_id").cast(pl.String).str.zfill(12).alias("product_id"),
        (pl.col("rank") + 1).alias("position"),
        pl.col("clicked").str.to_lowercase().eq("true").cast(pl.Int8).alias("click"),
    )
