"""Wayfair WANDS: furniture and home-goods products graded Exact / Partial / Irrelevant for
480 queries by people.

Get it from https://github.com/wayfair/WANDS (``git clone``): its ``dataset/`` folder holds
three tab-separated files, ``query.csv`` (``query_id``, ``query``, ``query_class``),
``product.csv`` (``product_id``, ``product_name``, ``product_class``, ``category hierarchy``,
``product_description``, ``product_features``, ``rating_count``, ``average_rating``,
``review_count``) and ``label.csv`` (``id``, ``query_id``, ``product_id``, ``label``). Pass the
clone or its ``dataset/`` folder.

The adapter makes a judged dataset (:mod:`datamodules.judged`): a request per query, the
position is the pair's order within its query in ``label.csv``, and the ``judgment`` is the
gain of the label. WANDS's README and sample notebook name the labels but fix no NDCG gains,
so the defaults are the ordinal grades Exact 2, Partial 1, Irrelevant 0 (with the default
exponential NDCG gain 2^g - 1, that is 3 / 1 / 0). Products carry ``product_name`` as title and
``product_description`` as description, ``product_class`` and the top level of the category
hierarchy (``category``) as categorical attributes, and ``rating_count``, ``average_rating``
and ``review_count`` as numbers (missing values stay missing). WANDS has no split: the
DataModule splits the queries at random. Products without a name are dropped with their
pairs; ``notes`` says how many.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datamodules.judged import blank_to_null, drop_untitled, graded, label_gains
from datamodules.tables import LogValidationError, SearchLog

FILES = ("query.csv", "product.csv", "label.csv")
QUERY_COLUMNS = ("query_id", "query")
PRODUCT_COLUMNS = ("product_id", "product_name")
LABEL_COLUMNS = ("query_id", "product_id", "label")
HIERARCHY_COLUMNS = ("category hierarchy", "category_hierarchy")  # the file / the README
NUMERIC_COLUMNS = ("rating_count", "average_rating", "review_count")
GAINS = {"Exact": 2.0, "Partial": 1.0, "Irrelevant": 0.0}


def read_wands(
    folder: str | Path, gains: dict | None = None, notes: list[str] | None = None
) -> SearchLog:
    """The judged canonical tables of WANDS (see the module docstring).

    ``gains`` overrides the gain of any label (``{"Partial": 0.5}``); what was dropped from
    the data is appended to ``notes`` when a list is given.
    """
    label_to_gain = label_gains("wands", GAINS, gains)
    query_path, product_path, label_path = find_files(Path(folder))
    queries = read_queries(query_path)
    products = read_products(product_path)
    labels = read_labels(label_path)
    products, labels = drop_untitled(
        products, labels, notes if notes is not None else [], str(label_path)
    )
    impressions = judged_pairs(labels, queries, label_to_gain, str(label_path))
    sources = {"impressions": str(label_path), "products": str(product_path)}
    return SearchLog(products=products, impressions=impressions, sources=sources)


def find_files(folder: Path) -> tuple[Path, Path, Path]:
    """``query.csv``, ``product.csv`` and ``label.csv``, in ``folder`` or its ``dataset/``."""
    if not folder.is_dir():
        raise LogValidationError(str(folder), None, "WANDS folder not found")
    if not (folder / "label.csv").exists() and (folder / "dataset").is_dir():
        folder = folder / "dataset"
    paths = tuple(folder / name for name in FILES)
    for path in paths:
        if not path.is_file():
            raise LogValidationError(
                str(path), None, "WANDS file not found (the dataset/ folder of its repository)"
            )
    return paths


def read_table(path: Path, required: tuple[str, ...]) -> pl.DataFrame:
    """A tab-separated file as text columns, once every ``required`` one is there."""
    try:
        table = pl.read_csv(path, separator="\t", infer_schema=False, quote_char='"')
    except pl.exceptions.PolarsError as error:
        first = str(error).strip().splitlines()[0]
        problem = f"unreadable as tab-separated text ({first})"
        raise LogValidationError(str(path), None, problem) from None
    for column in required:
        if column not in table.columns:
            hint = "; is it tab-separated?" if len(table.columns) == 1 else ""
            raise LogValidationError(
                str(path),
                column,
                f"required column is missing (found: {', '.join(table.columns)}){hint}",
                table.height,
            )
    return table


def read_queries(path: Path) -> pl.DataFrame:
    queries = read_table(path, QUERY_COLUMNS).select("query_id", "query")
    duplicated = queries.height - queries["query_id"].n_unique()
    if duplicated:
        raise LogValidationError(str(path), "query_id", "duplicate query_id", duplicated)
    return queries


def read_products(path: Path) -> pl.DataFrame:
    """Title, description, class, top category and the numbers, by ``product_id``."""
    table = read_table(path, PRODUCT_COLUMNS)
    columns = [pl.col("product_id"), blank_to_null("product_name").alias("title")]
    if "product_description" in table.columns:
        columns.append(blank_to_null("product_description").alias("description"))
    if "product_class" in table.columns:
        columns.append(blank_to_null("product_class").alias("product_class"))
    hierarchy = next((c for c in HIERARCHY_COLUMNS if c in table.columns), None)
    if hierarchy:
        top = pl.col(hierarchy).str.split("/").list.first().str.strip_chars()
        columns.append(pl.when(top == "").then(None).otherwise(top).alias("category"))
    products = table.select(columns)
    for name in NUMERIC_COLUMNS:
        if name in table.columns:
            products = products.with_columns(numbers(table[name], str(path)))
    return products


def numbers(column: pl.Series, source: str) -> pl.Series:
    """Text to numbers; empty stays missing, anything else not a number is an error."""
    text = column.str.strip_chars().replace("", None)
    values = text.cast(pl.Float64, strict=False)
    bad = int((values.is_null() & text.is_not_null()).sum())
    if bad:
        raise LogValidationError(source, column.name, "values that are not numbers", bad)
    return values


def read_labels(path: Path) -> pl.DataFrame:
    """The judged pairs in file order."""
    return read_table(path, LABEL_COLUMNS).select(*LABEL_COLUMNS)


def judged_pairs(
    labels: pl.DataFrame, queries: pl.DataFrame, gains: dict[str, float], source: str
) -> pl.DataFrame:
    """The ``impressions`` table: request, query, product, position and judgment."""
    known = pl.col("query_id").is_in(queries["query_id"].implode())
    unknown = labels.filter(pl.col("query_id").is_not_null() & ~known).height
    if unknown:
        raise LogValidationError(source, "query_id", "query ids not in query.csv", unknown)
    pairs = labels.join(queries, on="query_id", how="left", maintain_order="left")
    return pairs.select(
        pl.col("query_id").alias("request_id"),
        "query",
        "product_id",
        (pl.int_range(pl.len()).over("query_id") + 1).alias("position"),
        graded(labels["label"], gains, source),
    )
