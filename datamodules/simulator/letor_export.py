"""A simulated log as a LETOR-format judged dataset: train, vali and test files in SVMlight
format, for the semi-synthetic click experiments where no LETOR download is at hand.

Each distinct query text is one ``qid``; its documents are the products shown for it anywhere
in the log; a pair's label is its **consensus judgment**: the simulator's true relevance
(0-4) averaged over the requests that showed it and rounded, as a panel of annotators would
agree on it (true relevance also depends on the user, which a query-level judgment cannot).
The features are query-document features a text-retrieval system would compute, none of
them read from the simulator's hidden state:

1. TF-IDF cosine of query and title, 2. of query and description (scikit-learn's
   ``TfidfVectorizer`` fitted on the catalog's titles and descriptions);
3. share of query words in the title, 4. in the description;
5. query length and 6. title length in words;
7. rating, 8. log(1 + review count), 9. log(price);
10. the product's category named in the query, 11. its brand named in the query (0/1).

Queries are split 60/20/20 into train/vali/test by a seeded shuffle, so test queries are
unseen, as in LETOR's folds. ``rankbench simulate --format letor`` writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.datasets import dump_svmlight_file
from sklearn.feature_extraction.text import TfidfVectorizer

from datamodules.atomic import atomic_path, atomic_write_json
from datamodules.tables import SearchLog

FEATURES = (
    "tfidf_title",
    "tfidf_description",
    "overlap_title",
    "overlap_description",
    "query_words",
    "title_words",
    "rating",
    "log_review_count",
    "log_price",
    "category_in_query",
    "brand_in_query",
)
SPLIT_SHARES = {"train": 0.6, "vali": 0.2, "test": 0.2}


def judged_pairs(log: SearchLog) -> pl.DataFrame:
    """One row per (query, product) shown: ``query``, ``product_id``, ``judgment`` (the
    rounded mean true relevance over the requests that showed it), ``impressions``."""
    if log.truth is None:
        raise ValueError("a LETOR export needs the simulator's truth (true relevance)")
    shown = log.impressions.select("request_id", "query", "product_id").join(
        log.truth.relevance, on=["request_id", "product_id"], how="left"
    )
    return (
        shown.group_by("query", "product_id")
        .agg(
            pl.col("true_relevance")
            .cast(pl.Float64)
            .mean()
            .round(0)
            .cast(pl.Int32)
            .alias("judgment"),
            pl.len().alias("impressions"),
        )
        .sort("query", "product_id")
    )


def letor_features(pairs: pl.DataFrame, products: pl.DataFrame) -> np.ndarray:
    """The query-document features of every pair (see the module docstring), ``float64``."""
    table = pairs.join(products, on="product_id", how="left", maintain_order="left")
    queries = table["query"].to_list()
    features = []
    for column in ("title", "description"):
        vectorizer = TfidfVectorizer().fit(products[column].fill_null("").to_list())
        texts = table[column].fill_null("").to_list()
        query_vectors, text_vectors = vectorizer.transform(queries), vectorizer.transform(texts)
        features.append(np.asarray(query_vectors.multiply(text_vectors).sum(axis=1)).ravel())
    words = table.with_row_index("row").select(
        "row",
        *(pl.col(c).fill_null("").str.to_lowercase().alias(c) for c in ("title", "description")),
        pl.col("query").str.to_lowercase().str.split(" ").alias("word"),
    )
    for column in ("title", "description"):
        features.append(_word_share(words, column))
    features.append(table["query"].str.split(" ").list.len().cast(pl.Float64).to_numpy())
    features.append(table["title"].str.split(" ").list.len().cast(pl.Float64).to_numpy())
    features.append(table["rating"].cast(pl.Float64).fill_null(0.0).to_numpy())
    features.append(np.log1p(table["review_count"].cast(pl.Float64).fill_null(0.0).to_numpy()))
    features.append(np.log(table["price"].cast(pl.Float64).fill_null(1.0).to_numpy()))
    for column in ("category", "brand"):
        name = pl.col(column).fill_null("").str.to_lowercase()
        named = (name != "") & pl.col("query").str.to_lowercase().str.contains(name, literal=True)
        features.append(table.select(named.cast(pl.Float64))[column].to_numpy())
    return np.column_stack(features)


def _word_share(words: pl.DataFrame, column: str) -> np.ndarray:
    """Share of each row's query words found among the words of its ``column``."""
    text = (
        words.select("row", pl.col(column).str.replace_all(",", " ").str.split(" ").alias("word"))
        .explode("word")
        .unique()
        .with_columns(hit=pl.lit(True))
    )
    found = (
        words.select("row", "word")
        .explode("word")
        .filter(pl.col("word") != "")
        .join(text, on=["row", "word"], how="left")
        .group_by("row")
        .agg((pl.col("hit").is_not_null().sum() / pl.len()).alias("share"))
    )
    shares = words.select("row").join(found, on="row", how="left", maintain_order="left")
    return shares["share"].fill_null(0.0).to_numpy().astype(np.float64)


def write_letor(log: SearchLog, out_dir: Path, seed: int = 0) -> dict:
    """Write ``train.txt``, ``vali.txt``, ``test.txt`` (SVMlight with ``qid``, 1-based
    feature ids, the query text as each line's comment) and ``features.json``; returns a
    summary."""
    out_dir = Path(out_dir)
    pairs = judged_pairs(log)
    queries = pairs["query"].unique().sort().to_list()
    order = np.random.default_rng(seed).permutation(len(queries))
    cuts = np.cumsum([round(share * len(queries)) for share in SPLIT_SHARES.values()])[:-1]
    split_of = {}
    for name, part in zip(SPLIT_SHARES, np.split(order, cuts), strict=True):
        split_of.update({queries[i]: name for i in part})
    qid = {query: i + 1 for i, query in enumerate(queries)}
    pairs = pairs.with_columns(
        pl.col("query").replace_strict(split_of).alias("split"),
        pl.col("query").replace_strict(qid, return_dtype=pl.Int64).alias("qid"),
    ).sort("qid", "product_id")
    features = letor_features(pairs, log.products)
    summary = {"queries": len(queries), "pairs": pairs.height, "features": list(FEATURES)}
    for name in SPLIT_SHARES:
        rows = (pairs["split"] == name).to_numpy()
        with atomic_path(out_dir / f"{name}.txt") as tmp:
            dump_svmlight_file(
                features[rows],
                pairs["judgment"].to_numpy()[rows],
                str(tmp),
                zero_based=False,
                query_id=pairs["qid"].to_numpy()[rows],
            )
        summary[name] = {
            "queries": int(pairs.filter(pl.col("split") == name)["qid"].n_unique()),
            "pairs": int(rows.sum()),
        }
    summary["judgments"] = {
        str(g): int(n) for g, n in pairs["judgment"].value_counts().sort("judgment").iter_rows()
    }
    atomic_write_json(out_dir / "features.json", summary, indent=2)
    return summary
