"""Feature building: one feature table aligned with the impressions, and the spec models read.

Four kinds of features, all computed without any truth column:

- **numeric** product (and user) attributes, heavy-tailed ones through ``log1p``, then
  standardised with the training part's mean and standard deviation (missing -> 0, the mean);
- **categorical** attributes as integer codes, 0 reserved for missing or unseen values;
- **text** fields (query, title, description) as ids into one table of unique texts, so an
  encoder embeds each text once;
- **behaviour**: smoothed query-product and product click rates (and add-to-cart and
  purchase rates where logged) and a user's history (affinity to the product's brand and
  category, price relative to what the user clicked). They come from the training part only;
  training rows get out-of-fold values (K folds by request) so that no row's own label
  reaches its features, and validation/test rows get values from the whole training part.
  They are computed from counts per key and fold (:func:`fold_sums`), whole numbers that a
  Dask cluster makes on its workers, partition by partition (``datamodules/cluster.py``),
  with the same result.

A lexical feature, the share of query words found in the title, stands in for the text-match
features (BM25 and the like) of classic learning-to-rank feature sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import polars as pl

from datamodules.batches import SplitArrays
from datamodules.cluster import DaskCluster
from datamodules.tables import BEHAVIOUR_COLUMNS, SearchLog

# (keys, values) -> fold_sums of the training rows: counted here or on a cluster's workers.
FoldCounter = Callable[[list[str], list[str]], pl.DataFrame]


@dataclass(frozen=True)
class FeatureConfig:
    text_columns: tuple[str, ...] = ("title", "description")
    log1p_columns: tuple[str, ...] = ("price", "review_count")
    prior_strength: float = 20.0  # pseudo-impressions that pull a rate towards its mean
    oof_folds: int = 5  # folds for out-of-fold behaviour features on training rows
    user_affinity_columns: tuple[str, ...] = ("brand", "category")
    lexical_overlap: bool = True
    # The frozen text encoder's query-title cosine, a feature for every model, so that what a
    # fine-tuned text model adds is measured beyond plain access to the text.
    text_similarity: bool = True

    def __post_init__(self):
        if self.oof_folds < 2:
            raise ValueError("features.oof_folds must be at least 2")
        if self.prior_strength <= 0:
            raise ValueError("features.prior_strength must be positive")


@dataclass(frozen=True)
class FeatureSpec:
    """What a model needs to size itself. Column order is the order of the arrays."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    cardinalities: tuple[int, ...]  # per categorical feature, code 0 (missing) included
    text_fields: tuple[str, ...]  # each has a "<field>_text_id" column into `texts`
    tasks: tuple[str, ...]  # training targets: relevance plus the logged behaviours
    eval_labels: tuple[str, ...]  # tasks plus true_relevance where the dataset knows it
    max_list_size: int

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)


@dataclass
class BuiltFeatures:
    rows: pl.DataFrame  # one row per impression: keys, split, features, labels
    spec: FeatureSpec
    texts: list[str]  # text id -> text


def build_features(
    log: SearchLog,
    assignment: pl.DataFrame,
    labels: pl.DataFrame,
    config: FeatureConfig,
    seed: int,
    similarity: pl.DataFrame | None = None,
    cluster: DaskCluster | None = None,
) -> BuiltFeatures:
    """Features for every impression of ``log``; ``assignment`` maps request_id -> split.

    ``labels`` holds one row per impression (aligned with ``log.impressions``) of label
    columns: they are carried along but never read to build features. ``similarity``
    (``query``, ``product_id``, ``similarity``) is needed when ``config.text_similarity``.
    With a ``cluster``, the behaviour features' counts are made on its workers.
    """
    rows = keyed_rows(log.impressions.with_columns(labels), assignment, log, config, seed)
    behaviour = [c for c in BEHAVIOUR_COLUMNS if c in log.impressions.columns]
    plan = FeaturePlan.make(
        log,
        rows.schema,
        log.impressions.select("query", "product_id").unique(),
        rows["user_id"].unique() if "user_id" in rows.columns else None,
        config,
        _fold_counter(rows, behaviour, config, cluster),
        similarity,
    )
    rows = plan.raw(rows)
    rows = plan.finish(rows, standardisation_stats(rows.filter(pl.col("split") == "train"), plan))
    spec = plan.spec(
        labels.columns, int(rows.group_by("request_id").len()["len"].max()) if rows.height else 0
    )
    return BuiltFeatures(rows=rows, spec=spec, texts=plan.texts)


def keyed_rows(
    impressions: pl.DataFrame,
    assignment: pl.DataFrame,
    log: SearchLog,
    config: FeatureConfig,
    seed: int,
) -> pl.DataFrame:
    """Impressions (whole requests) with their split, fold and attributes, in array order:
    by request, and within a request in a seeded random order, not the logged one, so that a
    model or library that breaks score ties by input order cannot inherit the logging
    ranker's."""
    shuffle_key = pl.struct("request_id", "position").hash(seed=seed)
    rows = impressions.join(assignment, on="request_id", how="left", maintain_order="left").sort(
        [pl.col("request_id"), shuffle_key]
    )
    rows = _with_fold(rows, config.oof_folds, seed)
    rows = _join_attributes(rows, log.products, "product_id", config)[0]
    if log.users is not None and "user_id" in rows.columns:
        rows = _join_attributes(rows, log.users, "user_id", config, prefix="user_")[0]
    if "user_id" in rows.columns:  # a user's clicks, and everyone's: counted like behaviour
        rows = rows.with_columns(_user_click=pl.col("click").cast(pl.Float64), _all=pl.lit(0))
    return rows


@dataclass(frozen=True)
class FeaturePlan:
    """What turns :func:`keyed_rows` into feature rows, fixed from the whole log: the
    behaviour counts (:func:`fold_sums`), the texts and categorical values and, once the raw
    features of the training rows are known, their standardisation. Applied to the whole log
    at once, or to its parts one after another (``datamodules/streamed_log.py``) with the
    same result per row."""

    config: FeatureConfig
    behaviour: tuple[str, ...]
    history: bool
    count: FoldCounter
    behaviour_means: dict[str, float]
    texts: list[str]
    text_fields: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: dict[str, list]  # feature -> its values in code order (code 0: missing)
    similarity: pl.DataFrame | None

    @classmethod
    def make(
        cls,
        log: SearchLog,
        schema: pl.Schema,
        pairs: pl.DataFrame,
        users_seen: pl.Series | None,
        config: FeatureConfig,
        count: FoldCounter,
        similarity: pl.DataFrame | None,
        count_all: Callable[[list], list[pl.DataFrame]] | None = None,
    ) -> FeaturePlan:
        """``log``: its products, users and impression columns (the impressions' rows are not
        read); ``schema``: that of its :func:`keyed_rows`; ``pairs``: its distinct (query,
        product_id); ``users_seen``: its distinct user ids (None without ``user_id``);
        ``count``: the :func:`fold_sums` of its training rows; ``count_all``, where given,
        counts a list of :func:`counted_keys` at once (a log read in parts: one pass)."""
        if config.text_similarity and similarity is None:
            raise ValueError("features.text_similarity needs the query-title similarity table")
        columns = log.impressions.columns
        behaviour = [c for c in BEHAVIOUR_COLUMNS if c in columns]
        known = {}
        if count_all is not None:
            needed = counted_keys(schema, behaviour, config)
            tables = count_all(needed)
            known = {(tuple(k), tuple(v)): t for (k, v), t in zip(needed, tables, strict=True)}
        count = _memoized(count, known)
        product_numeric, product_categorical = _attribute_kinds(log.products, "product_id", config)
        user_numeric, user_categorical = [], []
        if log.users is not None and "user_id" in columns:
            user_numeric, user_categorical = _attribute_kinds(log.users, "user_id", config, "user_")
        history = "user_id" in columns
        per_product = count(["product_id"], list(behaviour)) if behaviour else None
        means = {}
        for column in behaviour:  # the training part's rate: whole numbers over whole numbers
            n = int(per_product["n"].sum())
            means[column] = float(per_product[column].sum()) / n if n else 0.0
        rate_features = []
        for prefix in ("qp", "product"):
            rate_features.append(f"{prefix}_log_impressions")
            rate_features += [f"{prefix}_{column}_rate" for column in behaviour]
        history_features = []
        if history:  # what _user_history_features adds, in its order
            history_features = ["user_log_clicks"]
            history_features += [
                f"user_{a}_affinity" for a in config.user_affinity_columns if a in schema
            ]
            if "price" in schema and schema["price"].is_numeric():
                history_features.append("user_relative_price")
        text_match = ["query_title_overlap"] if config.lexical_overlap else []
        if config.text_similarity:
            text_match.append("query_title_similarity")
        shown = log.products.join(pairs, on="product_id", how="semi")
        text_fields = ("query", *[c for c in config.text_columns if c in log.products.columns])
        uniques = [pairs["query"]] + [shown[c] for c in text_fields[1:]]
        texts = pl.concat([u.drop_nulls() for u in uniques]).unique().sort().to_list()
        categorical = {}
        for feature in product_categorical:
            categorical[feature] = _values(shown[feature].cast(pl.String))
        if user_categorical:
            seen = log.users.join(pl.DataFrame(users_seen), on="user_id", how="semi")
            for feature in user_categorical:
                values = seen[feature.removeprefix("user_")].cast(pl.String)
                categorical[feature] = _values(values)
        return cls(
            config=config,
            behaviour=tuple(behaviour),
            history=history,
            count=count,
            behaviour_means=means,
            texts=texts,
            text_fields=text_fields,
            numeric=(
                *product_numeric,
                *user_numeric,
                *rate_features,
                *history_features,
                *text_match,
            ),
            categorical=categorical,
            similarity=similarity,
        )

    def raw(self, rows: pl.DataFrame) -> pl.DataFrame:
        """:func:`keyed_rows` with every feature, the numbers not yet standardised."""
        rows = _rate_features(rows, list(self.behaviour), self)
        if self.history:
            rows = _user_history_features(rows, self.config, self.count)
        if "_user_click" in rows.columns:
            rows = rows.drop("_user_click", "_all")
        rows = _text_ids(rows, self.text_fields, self.texts)
        if self.config.lexical_overlap:
            rows = rows.with_columns(_query_title_overlap(rows))
        if self.config.text_similarity:
            rows = rows.join(
                self.similarity.rename({"similarity": "query_title_similarity"}),
                on=["query", "product_id"],
                how="left",
                maintain_order="left",
            )
        return rows

    def finish(self, rows: pl.DataFrame, stats: dict[str, tuple[float, float]]) -> pl.DataFrame:
        """Raw feature rows standardised with ``stats`` and their categories coded."""
        return _encode_categoricals(_standardise(rows, stats), self.categorical)

    def spec(self, label_columns, max_list_size: int) -> FeatureSpec:
        tasks = ("relevance", *self.behaviour)
        return FeatureSpec(
            numeric=self.numeric,
            categorical=tuple(self.categorical),
            cardinalities=tuple(len(v) + 1 for v in self.categorical.values()),
            text_fields=self.text_fields,
            tasks=tasks,
            eval_labels=tuple(c for c in label_columns if c in (*tasks, "true_relevance")),
            max_list_size=max_list_size,
        )


def counted_keys(
    schema: pl.Schema, behaviour: list[str], config: FeatureConfig
) -> list[tuple[list[str], list[str]]]:
    """The (keys, values) of every :func:`fold_sums` the features of rows with ``schema`` (of
    :func:`keyed_rows`) read, so that a log read in parts counts them in one pass."""
    counted = [(["query", "product_id"], behaviour), (["product_id"], behaviour)]
    if "user_id" in schema:
        clicks = ["_user_click"]
        counted.append((["user_id"], clicks))
        for attribute in config.user_affinity_columns:
            if attribute in schema:
                counted += [(["user_id", attribute], clicks), ([attribute], clicks)]
                counted.append((["_all"], clicks))
        if "price" in schema and schema["price"].is_numeric():
            counted.append((["user_id", "price"], clicks))
    return list({(tuple(k), tuple(v)): (k, v) for k, v in counted}.values())


def _memoized(count: FoldCounter, known: dict) -> FoldCounter:
    """``count`` computed once per (keys, values), ``known`` ones not at all: every part of a
    log reads the same sums."""
    done = dict(known)

    def memoized(keys: list[str], values: list[str]) -> pl.DataFrame:
        key = (tuple(keys), tuple(values))
        if key not in done:
            done[key] = count(list(keys), list(values))
        return done[key]

    return memoized


def split_arrays(rows: pl.DataFrame, spec: FeatureSpec, split: str) -> SplitArrays:
    """The arrays models read of feature rows of one split (or a part of it), in row order;
    ``group`` numbers their requests from 0."""
    text_columns = [f"{f}_text_id" for f in spec.text_fields]
    request_ids = rows["request_id"]
    return SplitArrays(
        numeric=_matrix(rows, spec.numeric, np.float32),
        categorical=_matrix(rows, spec.categorical, np.int64),
        text_ids=_matrix(rows, text_columns, np.int64),
        labels={
            name: rows[name].cast(pl.Float32).fill_null(np.nan).to_numpy()
            for name in spec.eval_labels
            # The truth is for evaluation only: models never see it, not even as labels.
            if name in spec.tasks or split == "test"
        },
        group=request_ids.rle_id().cast(pl.Int64).to_numpy(),
        request_id=request_ids.to_numpy(),
        position=rows["position"].to_numpy(),
    )


def _matrix(rows: pl.DataFrame, columns, dtype) -> np.ndarray:
    if not columns:
        return np.zeros((rows.height, 0), dtype=dtype)
    return rows.select(columns).to_numpy().astype(dtype, copy=False)


def _values(column: pl.Series) -> list:
    return column.drop_nulls().unique().sort().to_list()


# --------------------------------------------------------------------------- attributes


def _with_fold(rows: pl.DataFrame, folds: int, seed: int) -> pl.DataFrame:
    """A fold per training request (by a seeded hash of its id), -1 outside training."""
    fold = (pl.col("request_id").hash(seed=seed) % folds).cast(pl.Int32)
    return rows.with_columns(
        _fold=pl.when(pl.col("split") == "train").then(fold).otherwise(pl.lit(-1, pl.Int32))
    )


def _attribute_kinds(
    table: pl.DataFrame, key: str, config: FeatureConfig, prefix: str = ""
) -> tuple[list[str], list[str]]:
    """The numeric and the categorical features an entity's attributes give."""
    numeric, categorical = [], []
    for name, dtype in table.schema.items():
        if name == key or name in config.text_columns:
            continue
        if dtype.is_numeric():
            numeric.append(f"{prefix}{name}")
        elif dtype in (pl.String, pl.Categorical, pl.Boolean):
            categorical.append(f"{prefix}{name}")
        # dates and nested types are not features
    return numeric, categorical


def _join_attributes(
    rows: pl.DataFrame, table: pl.DataFrame, key: str, config: FeatureConfig, prefix: str = ""
) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Join an entity's attributes; numeric ones get log1p where configured."""
    numeric, categorical = _attribute_kinds(table, key, config, prefix)
    columns = []
    for name in table.columns:
        feature = f"{prefix}{name}"
        expr = pl.col(name)
        if feature in numeric:
            expr = expr.cast(pl.Float64)
            if name in config.log1p_columns:
                expr = expr.clip(lower_bound=0).log1p()
        elif feature in categorical:
            expr = expr.cast(pl.String)
        else:
            continue
        columns.append(expr.alias(feature))
    attributes = table.select(pl.col(key), *columns)
    text = [c for c in config.text_columns if c in table.columns and not prefix]
    if text:
        attributes = attributes.with_columns(table.select(text))
    return rows.join(attributes, on=key, how="left"), numeric, categorical


# --------------------------------------------------------------------------- behaviour


def fold_sums(rows: pl.DataFrame, keys: list[str], values: list[str]) -> pl.DataFrame:
    """The counting step of :func:`out_of_fold_sums`: per (``keys``, fold) of the training
    rows, how many there are (``n``) and the sums of ``values``.

    The values are whole numbers (clicks and the like), so the sums of parts of the rows that
    keep each request whole add up to the whole rows' exactly (:func:`add_fold_sums`).
    """
    train = rows.filter(pl.col("split") == "train")
    return train.group_by([*keys, "_fold"]).agg(
        pl.len().cast(pl.Int64).alias("n"), *[pl.col(v).cast(pl.Float64).sum() for v in values]
    )


def add_fold_sums(parts: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """The :func:`fold_sums` of rows from those of their parts."""
    by = [*keys, "_fold"]
    return pl.concat(parts).group_by(by).agg(pl.exclude(by).sum())


def many_fold_sums(rows: pl.DataFrame, counted: list) -> list[pl.DataFrame]:
    """:func:`fold_sums` of ``rows`` for each (keys, values) of ``counted``."""
    return [fold_sums(rows, keys, values) for keys, values in counted]


def add_many_fold_sums(parts: list[list[pl.DataFrame]], counted: list) -> list[pl.DataFrame]:
    """:func:`many_fold_sums` of rows from those of their parts."""
    return [add_fold_sums([part[i] for part in parts], keys) for i, (keys, _) in enumerate(counted)]


def out_of_fold_sums(
    rows: pl.DataFrame, keys: list[str], values: list[str], per_fold: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per row, sums of ``values`` over training rows sharing ``keys``, own fold excluded.

    Training rows see the other folds only; validation and test rows see all training rows.
    Returns one row per input row with columns ``n`` (matching impressions) and each value.
    ``per_fold``: the rows' :func:`fold_sums`, where they were counted elsewhere.
    """
    per_fold = fold_sums(rows, keys, values) if per_fold is None else per_fold
    # In key order, so that sums of floats take their terms in one order.
    per_fold = per_fold.sort([*keys, "_fold"])
    sums = ["n", *values]
    total = per_fold.group_by(keys, maintain_order=True).agg(pl.col(sums).sum())
    joined = (
        rows.select([*keys, "_fold"])
        .join(total, on=keys, how="left", maintain_order="left")
        .join(per_fold, on=[*keys, "_fold"], how="left", suffix="_fold", maintain_order="left")
    )
    # A training row sees (K-1)/K of the training part, a validation or test row all of it:
    # scaling the out-of-fold sums by K/(K-1) puts both on the same footing.
    folds = int(per_fold["_fold"].max()) + 1 if per_fold.height else 1
    scale = pl.when(pl.col("_fold") >= 0).then(folds / max(folds - 1, 1)).otherwise(1.0)
    return joined.select(
        ((pl.col(c).fill_null(0) - pl.col(f"{c}_fold").fill_null(0)) * scale).alias(c) for c in sums
    )


def _fold_counter(
    rows: pl.DataFrame, behaviour: list[str], config: FeatureConfig, cluster: DaskCluster | None
) -> FoldCounter:
    """:func:`fold_sums` of ``rows``, here or on the cluster's workers (the rows sent once)."""
    if cluster is None:
        return partial(fold_sums, rows)
    counted = [
        "request_id",
        "split",
        "_fold",
        "query",
        "product_id",
        "user_id",
        "price",
        "_user_click",
        "_all",
        *behaviour,
        *config.user_affinity_columns,
    ]
    partitions = cluster.scatter(
        rows.select(c for c in rows.columns if c in counted), stage="features"
    )

    def count(keys: list[str], values: list[str]) -> pl.DataFrame:
        return partitions.sum(
            partial(fold_sums, keys=keys, values=values), partial(add_fold_sums, keys=keys)
        )

    return count


def _smoothed(successes: pl.Expr, trials: pl.Expr, mean: float, strength: float) -> pl.Expr:
    """A rate shrunk towards ``mean`` by ``strength`` pseudo-trials."""
    return (successes + strength * mean) / (trials + strength)


def _rate_features(rows: pl.DataFrame, behaviour: list[str], plan: FeaturePlan) -> pl.DataFrame:
    """Smoothed query-product and product rates of each behaviour, and log impressions."""
    new_columns = []
    for keys, prefix in ((["query", "product_id"], "qp"), (["product_id"], "product")):
        sums = out_of_fold_sums(rows, keys, behaviour, plan.count(keys, behaviour))
        new_columns.append(pl.Series(f"{prefix}_log_impressions", np.log1p(sums["n"])))
        for column in behaviour:
            mean, strength = plan.behaviour_means[column], plan.config.prior_strength
            rate = sums.select(_smoothed(pl.col(column), pl.col("n"), mean, strength))
            new_columns.append(rate.to_series().alias(f"{prefix}_{column}_rate"))
    return rows.with_columns(new_columns)


def _user_history_features(
    rows: pl.DataFrame, config: FeatureConfig, count: FoldCounter
) -> pl.DataFrame:
    """A user's clicks in training: affinity to this product's attributes and its price."""

    def clicks_by(keys: list[str]) -> pl.DataFrame:
        return out_of_fold_sums(rows, keys, ["_user_click"], count(keys, ["_user_click"]))

    user_clicks = clicks_by(["user_id"])["_user_click"]
    new_columns = [pl.Series("user_log_clicks", np.log1p(user_clicks))]
    for attribute in config.user_affinity_columns:
        if attribute not in rows.columns:
            continue
        # Smoothed towards the value's share of all clicks, so a new user gets the crowd's.
        user_value = clicks_by(["user_id", attribute])
        crowd_value = clicks_by([attribute])["_user_click"]
        crowd_total = clicks_by(["_all"])["_user_click"]
        crowd_share = (crowd_value / crowd_total.clip(lower_bound=1.0)).to_numpy()
        affinity = (user_value["_user_click"].to_numpy() + crowd_share) / (
            user_clicks.to_numpy() + 1.0
        )
        new_columns.append(pl.Series(f"user_{attribute}_affinity", affinity))
    if "price" in rows.columns and rows.schema["price"].is_numeric():
        new_columns.append(_user_relative_price(rows, user_clicks, count))
    return rows.with_columns(new_columns)


def _user_relative_price(
    rows: pl.DataFrame, user_clicks: pl.Series, count: FoldCounter
) -> pl.Series:
    """log price of this product minus the mean log price the user clicked (0 without history).

    ``price`` has already been through log1p when configured, so this is a ratio of prices.
    """
    # Counted as clicks per (user, price), whole numbers; the prices are summed from them
    # here, in key order, so that the sum is the same however the rows were counted.
    per_fold = (
        count(["user_id", "price"], ["_user_click"])
        .sort("user_id", "_fold", "price")
        .group_by("user_id", "_fold", maintain_order=True)
        .agg(
            pl.col("n").sum(),
            (pl.col("price").fill_null(0) * pl.col("_user_click")).sum().alias("_clicked_price"),
        )
    )
    price_sum = out_of_fold_sums(rows, ["user_id"], ["_clicked_price"], per_fold)["_clicked_price"]
    clicks = user_clicks.to_numpy()
    mean_clicked = np.divide(
        price_sum.to_numpy(), clicks, out=np.zeros(len(clicks)), where=clicks > 0
    )
    relative = np.where(clicks > 0, rows["price"].fill_null(0).to_numpy() - mean_clicked, 0.0)
    return pl.Series("user_relative_price", relative)


# --------------------------------------------------------------------------- text


def _text_ids(rows: pl.DataFrame, fields: tuple[str, ...], texts: list[str]) -> pl.DataFrame:
    """Add ``<field>_text_id``: each text field's id into ``texts`` (-1 without text)."""
    lookup = pl.DataFrame(
        {"_text": pl.Series(texts, dtype=pl.String), "_id": pl.int_range(len(texts), eager=True)}
    )
    for field in fields:
        rows = rows.join(
            lookup.rename({"_text": field, "_id": f"{field}_text_id"}),
            on=field,
            how="left",
            maintain_order="left",
        ).with_columns(pl.col(f"{field}_text_id").fill_null(-1).cast(pl.Int64))
    return rows


def _words(text: pl.Expr) -> pl.Expr:
    return text.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.split(" ")


def _query_title_overlap(rows: pl.DataFrame) -> pl.Series:
    """Share of the query's distinct words that appear in the title, per unique pair."""
    pairs = rows.select("query", "title").unique()
    query_words = _words(pl.col("query")).list.eval(pl.element().filter(pl.element() != ""))
    title_words = _words(pl.col("title"))
    pairs = pairs.with_columns(
        query_title_overlap=(
            query_words.list.set_intersection(title_words).list.len()
            / query_words.list.unique().list.len().clip(lower_bound=1)
        ).cast(pl.Float64)
    )
    joined = rows.select("query", "title").join(
        pairs, on=["query", "title"], how="left", maintain_order="left"
    )
    return joined["query_title_overlap"]


# --------------------------------------------------------------------------- encoding


def standardisation_stats(train: pl.DataFrame, plan: FeaturePlan) -> dict[str, tuple[float, float]]:
    """Per numeric feature, the training rows' mean and standard deviation (missing values
    and NaN left out; a constant or empty feature gets 0 and 1)."""
    stats = {}
    for name in plan.numeric:
        values = train[name].cast(pl.Float64).fill_nan(None)  # NaN must not poison the stats
        mean = values.mean() if values.null_count() < len(values) else 0.0
        std = values.std() if values.null_count() < len(values) - 1 else 1.0
        stats[name] = (mean or 0.0, std)
    return stats


def _standardise(rows: pl.DataFrame, stats: dict[str, tuple[float, float]]) -> pl.DataFrame:
    """Standardise with training statistics; missing values become 0 (the training mean)."""
    columns = []
    for name, (mean, std) in stats.items():
        std = std if std and np.isfinite(std) and std > 0 else 1.0
        columns.append(
            ((pl.col(name).cast(pl.Float64) - mean) / std)
            .fill_null(0.0)
            .fill_nan(0.0)
            .cast(pl.Float32)
            .alias(name)
        )
    return rows.with_columns(columns)


def _encode_categoricals(rows: pl.DataFrame, vocabularies: dict[str, list]) -> pl.DataFrame:
    """Integer codes from the values the log shows (its catalog's); 0 means missing."""
    columns = []
    for name, values in vocabularies.items():
        lookup = dict(zip(values, range(1, len(values) + 1), strict=True))
        columns.append(
            pl.col(name).replace_strict(lookup, default=0, return_dtype=pl.Int64).alias(name)
        )
    return rows.with_columns(columns)
