"""Amazon Shopping Queries (ESCI): queries and products graded Exact / Substitute / Complement /
Irrelevant by people.

Get it from https://github.com/amazon-science/esci-data: its ``shopping_queries_dataset/``
folder holds ``shopping_queries_dataset_examples.parquet`` (one judged (query, product) pair a
row) and ``shopping_queries_dataset_products.parquet`` (the catalog, one row per product and
locale). The files are kept in Git LFS: if they are a few hundred bytes, run ``git lfs pull``.
Pass either that folder or the clone holding it.

The adapter makes a judged dataset (:mod:`datamodules.judged`) of one locale (``us``, ``es``
or ``jp``) and one version: ``small`` (the reduced set of task 1, query-product ranking),
``large`` (tasks 2 and 3) or ``all``. A request per ``query_id``; the position is the pair's
order within its query in the examples file; the ``judgment`` is the gain of the label,
by default those of the ESCI paper's NDCG (E 1.0, S 0.1, C 0.01, I 0.0); the dataset's own
train / test split is kept. Products carry their title and description as text and brand and
colour as categorical attributes. Products without a title are dropped with their pairs, as
are pairs whose product the catalog lacks; ``notes`` says how many.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datamodules.judged import GIVEN_SPLIT, blank_to_null, drop_untitled, graded, label_gains
from datamodules.tables import LogValidationError, SearchLog

EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
SUBFOLDER = "shopping_queries_dataset"
EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label", "split")
PRODUCT_COLUMNS = ("product_id", "product_title", "product_locale")
OPTIONAL_PRODUCT_COLUMNS = {
    "product_description": "description",
    "product_brand": "brand",
    "product_color": "color",
}
LOCALES = ("us", "es", "jp")
VERSIONS = {"small": "small_version", "large": "large_version", "all": None}
GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
SPLITS = ("train", "test")


def read_esci(
    folder: str | Path,
    locale: str = "us",
    version: str = "small",
    gains: dict | None = None,
    notes: list[str] | None = None,
) -> SearchLog:
    """The judged canonical tables of one locale and version (see the module docstring).

    ``gains`` overrides the gain of any label (``{"S": 0.5}``); what was dropped from the
    data is appended to ``notes`` when a list is given.
    """
    check_choice("locale", locale, LOCALES)
    check_choice("version", version, tuple(VERSIONS))
    label_to_gain = label_gains("esci", GAINS, gains)
    examples_path, products_path = find_files(Path(folder))
    examples = read_examples(examples_path, locale, version)
    products = read_products(products_path, locale, examples["product_id"].unique())
    products, examples = drop_untitled(
        products, examples, notes if notes is not None else [], str(examples_path)
    )
    impressions = judged_pairs(examples, label_to_gain, str(examples_path))
    sources = {"impressions": str(examples_path), "products": str(products_path)}
    return SearchLog(products=products, impressions=impressions, sources=sources)


def check_choice(option: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"esci: unknown {option} {value!r}; expected one of {', '.join(allowed)}")


def find_files(folder: Path) -> tuple[Path, Path]:
    """The examples and products files, in ``folder`` or in its ``shopping_queries_dataset``."""
    if not folder.is_dir():
        raise LogValidationError(str(folder), None, "ESCI folder not found")
    if not (folder / EXAMPLES_FILE).exists() and (folder / SUBFOLDER).is_dir():
        folder = folder / SUBFOLDER
    paths = folder / EXAMPLES_FILE, folder / PRODUCTS_FILE
    for path in paths:
        if not path.is_file():
            raise LogValidationError(
                str(path), None, "ESCI file not found (from github.com/amazon-science/esci-data)"
            )
    return paths


def require_columns(path: Path, required) -> list[str]:
    """The file's columns, once every ``required`` one is among them."""
    try:
        columns = list(pl.read_parquet_schema(path))
    except Exception:  # polars raises several error types for a file that is not Parquet
        hint = "a Git LFS pointer: run `git lfs pull`" if is_lfs_pointer(path) else "unreadable"
        raise LogValidationError(str(path), None, f"not a Parquet file ({hint})") from None
    for column in required:
        if column not in columns:
            raise LogValidationError(
                str(path), column, f"required column is missing (found: {', '.join(columns)})"
            )
    return columns


def is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(40).startswith(b"version https://git-lfs")


def read_examples(path: Path, locale: str, version: str) -> pl.DataFrame:
    """The pairs of one locale and version, with their row in the file."""
    flag = VERSIONS[version]
    flags = (flag,) if flag else ()
    require_columns(path, EXAMPLE_COLUMNS + flags)
    wanted = pl.col("product_locale") == locale
    if flag:  # 0/1 integers in the published file; booleans are read alike
        wanted = wanted & (pl.col(flag).cast(pl.Int64, strict=False) == 1)
    examples = (
        pl.scan_parquet(path)
        .select(*EXAMPLE_COLUMNS, *flags)
        .with_row_index("_row")
        .filter(wanted)
        .select(
            "_row",
            *(pl.col(c).cast(pl.String) for c in ("query_id", "query", "product_id")),
            *(pl.col(c).cast(pl.String) for c in ("esci_label", "split")),
        )
        .collect()
    )
    if examples.height == 0:
        raise LogValidationError(
            str(path), "product_locale", f"no {version} examples for locale {locale!r}", 0
        )
    return examples


def read_products(path: Path, locale: str, shown: pl.Series) -> pl.DataFrame:
    """The catalog of ``locale``, only the products the pairs show."""
    columns = require_columns(path, PRODUCT_COLUMNS)
    optional = {c: name for c, name in OPTIONAL_PRODUCT_COLUMNS.items() if c in columns}
    products = (
        pl.scan_parquet(path)
        .select(*PRODUCT_COLUMNS, *optional)
        .filter(pl.col("product_locale") == locale)
        .with_columns(pl.col("product_id").cast(pl.String))
        .filter(pl.col("product_id").is_in(shown.implode()))
        .select(
            "product_id",
            blank_to_null("product_title").alias("title"),
            *(blank_to_null(column).alias(name) for column, name in optional.items()),
        )
        .collect()
    )
    duplicated = products.height - products["product_id"].n_unique()
    if duplicated:
        raise LogValidationError(
            str(path), "product_id", f"duplicate product_id in locale {locale!r}", duplicated
        )
    return products


def judged_pairs(examples: pl.DataFrame, gains: dict[str, float], source: str) -> pl.DataFrame:
    """The ``impressions`` table: request, query, product, position, judgment and split."""
    bad_split = examples.filter(pl.col("split").is_null() | ~pl.col("split").is_in(list(SPLITS)))
    if bad_split.height:
        raise LogValidationError(
            source, "split", f"split must be {' or '.join(SPLITS)}", bad_split.height
        )
    examples = examples.sort("_row")
    return examples.select(
        pl.col("query_id").alias("request_id"),
        "query",
        "product_id",
        (pl.int_range(pl.len()).over("query_id") + 1).alias("position"),
        graded(examples["esci_label"], gains, source),
        pl.col("split").alias(GIVEN_SPLIT),
    )
