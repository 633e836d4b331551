"""LETOR / SVMlight ranking files: ``<label> qid:<query> <feature>:<value> ... # comment``.

A folder holds ``train``, ``vali`` (or ``valid``, ``val``, ``validation``) and ``test`` files
(``.txt``, ``.svm`` or without suffix), as in LETOR 4.0, MSLR-WEB10K/30K and Yahoo! LTR. Each
line is one judged (query, document) pair: the graded human label, the query id, and sparse
numeric features (a feature a line leaves out is 0). They become a judged dataset
(:mod:`datamodules.judged`): a request per query id, the file order as position, a product
per line carrying the features ``f<id>`` as numeric attributes, the label as ``judgment`` and
the file as the split. There is no text and no click, so the tabular rankers run on the
features (MMoE with its one task) and the relevance columns of the tables are the labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from datamodules.judged import GIVEN_SPLIT, JUDGMENT
from datamodules.tables import LogValidationError, SearchLog

SPLIT_NAMES = {
    "train": "train",
    "vali": "val",
    "valid": "val",
    "val": "val",
    "validation": "val",
    "test": "test",
}
SUFFIXES = ("", ".txt", ".svm", ".svmlight", ".dat")


def find_split_files(folder: Path) -> dict[str, Path]:
    """``{"train": path, "val": path, "test": path}``; validation is optional."""
    if not folder.is_dir():
        raise LogValidationError(str(folder), None, "LETOR folder not found")
    files = {}
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        for suffix in sorted(SUFFIXES, key=len, reverse=True):
            if suffix and not name.endswith(suffix):
                continue
            stem = name[: len(name) - len(suffix)] if suffix else name
            if path.is_file() and stem in SPLIT_NAMES:
                files.setdefault(SPLIT_NAMES[stem], path)
                break
    for split in ("train", "test"):
        if split not in files:
            raise LogValidationError(
                str(folder), None, f"no {split} file (e.g. {split}.txt in SVMlight format)"
            )
    return {split: files[split] for split in ("train", "val", "test") if split in files}


def parse_svmlight(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(lines, pairs)``: one row per data line (``line`` number, ``qid``, ``label``) and one
    per feature given on it (``line``, ``feature`` id, ``number``). Blank and comment-only
    lines are skipped."""
    source = str(path)
    if path.stat().st_size == 0:
        raise LogValidationError(source, None, "the file is empty", 0)
    text = pl.Series("raw", path.read_text().splitlines())
    lines = (
        pl.DataFrame({"raw": text})
        .with_row_index("line", offset=1)
        .with_columns(pl.col("raw").str.split("#").list.first().str.strip_chars())
        .filter(pl.col("raw") != "")
        .with_columns(
            pl.col("raw").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        )
    )
    if lines.height == 0:
        raise LogValidationError(source, None, "no data lines", 0)
    lines = lines.with_columns(
        label=pl.col("raw").list.get(0).cast(pl.Float64, strict=False),
        qid=pl.col("raw").list.get(1, null_on_oob=True),
        pairs=pl.col("raw").list.slice(2),
    )
    _check(lines, pl.col("label").is_null(), source, "label", "labels that are not numbers")
    _check(
        lines,
        pl.col("qid").is_null() | ~pl.col("qid").str.starts_with("qid:"),
        source,
        "qid",
        "lines without qid:<id> after the label",
    )
    pairs = (
        lines.select("line", "pairs")
        .explode("pairs")
        .filter(pl.col("pairs").is_not_null())
        .with_columns(pl.col("pairs").str.split_exact(":", 1).struct.rename_fields(["id", "value"]))
        .unnest("pairs")
        .with_columns(
            pl.col("id").cast(pl.Int64, strict=False).alias("feature"),
            pl.col("value").cast(pl.Float64, strict=False).alias("number"),
        )
    )
    _check(
        pairs,
        pl.col("feature").is_null() | (pl.col("feature") < 0),
        source,
        "features",
        "feature ids that are not non-negative integers",
    )
    _check(
        pairs, pl.col("number").is_null(), source, "features", "feature values that are not numbers"
    )
    return lines.select("line", pl.col("qid").str.slice(4), "label"), pairs.select(
        "line", "feature", "number"
    )


def _check(table: pl.DataFrame, bad: pl.Expr, source: str, column: str, problem: str) -> None:
    rows = table.filter(bad)
    if rows.height:
        first = int(rows["line"][0])
        raise LogValidationError(source, column, f"{problem}, first on line {first}", rows.height)


def read_letor(folder: str | Path) -> SearchLog:
    """The judged canonical tables of a LETOR folder (see the module docstring)."""
    folder = Path(folder)
    parts, feature_parts = [], []
    for split, path in find_split_files(folder).items():
        lines, pairs = parse_svmlight(path)
        key = pl.lit(f"{split}:") + pl.col("line").cast(pl.String)
        parts.append(lines.with_columns(product_id=key, **{GIVEN_SPLIT: pl.lit(split)}))
        feature_parts.append(pairs.with_columns(product_id=key))
    lines = pl.concat(parts)
    pairs = pl.concat(feature_parts)
    impressions = lines.select(
        pl.col("qid").alias("request_id"),
        pl.format("query {}", pl.col("qid")).alias("query"),
        "product_id",
        (pl.int_range(pl.len()).over("qid") + 1).alias("position"),
        pl.col("label").alias(JUDGMENT),
        GIVEN_SPLIT,
    )
    return SearchLog(
        products=_feature_table(lines["product_id"], pairs),
        impressions=impressions,
        sources={"impressions": str(folder), "products": str(folder)},
    )


def _feature_table(product_ids: pl.Series, pairs: pl.DataFrame) -> pl.DataFrame:
    """A dense ``f<id>`` column per feature id seen; what a line leaves out is 0."""
    ids = np.sort(pairs["feature"].unique().to_numpy())
    rows = pairs.join(product_ids.to_frame().with_row_index("row"), on="product_id", how="left")[
        "row"
    ].to_numpy()
    columns = np.searchsorted(ids, pairs["feature"].to_numpy())
    matrix = np.zeros((len(product_ids), len(ids)), dtype=np.float64)
    matrix[rows, columns] = pairs["number"].to_numpy()
    table = pl.DataFrame(matrix, schema=[f"f{i}" for i in ids], orient="row")
    return table.insert_column(0, product_ids.alias("product_id"))
