"""A log folder read a part at a time: labels, features and arrays in bounded memory.

With ``data.part_rows`` set, a log folder of Parquet tables (``--dataset logdir``; what
``rankbench simulate --out`` writes) is never held in memory whole. Polars scans its
impressions and reads them in parts of whole requests, in request order, about
``part_rows`` impressions each. What stays in memory is one row per request (its split),
per (query, product) pair (similarity and labels), per key of the behaviour counts, and one
part. The labels' and the behaviour features' counts are sums over the parts, made by the
functions that count the whole log in one process (:class:`labeling.log_counts.RowCounter`,
:func:`datamodules.features.fold_sums`); the feature rows are made a part at a time by the
same :class:`datamodules.features.FeaturePlan`; the arrays models read are written to files
part by part and memory-mapped.

Labels are those of the whole log in memory (the counts are whole numbers). Features are too,
but for the last bits of their standardisation: the training rows' means and deviations are
summed over the parts. The array files live in a temporary folder (``$TMPDIR``) removed when
the DataModule goes.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from datamodules.batches import SplitArrays
from datamodules.features import (
    FeatureConfig,
    FeaturePlan,
    FeatureSpec,
    add_fold_sums,
    add_many_fold_sums,
    fold_sums,
    keyed_rows,
    many_fold_sums,
    split_arrays,
)
from datamodules.judged import JUDGMENT
from datamodules.labels import (
    LabelConfig,
    PartsCounter,
    split_grades,
    split_labellings,
)
from datamodules.splits import SPLITS, SplitConfig, assign_splits
from datamodules.tables import LogScan, LogValidationError, SearchLog, validate_log
from labeling.behavioural import behavioural_grade
from labeling.log_counts import COUNTED_COLUMNS
from labeling.sampling import SamplingConfig, sample_mask

log = logging.getLogger(__name__)


class LogParts:
    """The impressions of a :class:`~datamodules.tables.LogScan` in parts of whole requests,
    in request order, each validated as it is read (an error counts the rows of the part it
    is found in). ``requests``: one row per request, its impressions (``rows``) and first
    ``timestamp`` where logged."""

    def __init__(self, scan: LogScan, part_rows: int):
        self.scan = scan
        self.prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None
        source = scan.source("impressions")
        schema = _read(scan.impressions.collect_schema, source)
        if "request_id" not in schema:
            raise LogValidationError(source, "request_id", "required column is missing")
        first_seen = [pl.col("timestamp").min()] if "timestamp" in schema else []
        self.requests = _read(
            scan.impressions.group_by("request_id")
            .agg(pl.len().alias("rows"), *first_seen)
            .sort("request_id")
            .collect,
            source,
        )
        if self.requests.height == 0:
            raise LogValidationError(source, None, "no impressions: the table is empty")
        missing = self.requests.filter(pl.col("request_id").is_null())
        if missing.height:
            raise LogValidationError(
                source, "request_id", "missing values (null or NaN)", int(missing["rows"].sum())
            )
        # Requests in order, cut where the impressions so far pass a multiple of part_rows.
        before = self.requests["rows"].cum_sum() - self.requests["rows"]
        cuts = (
            self.requests.select("request_id", part=before // part_rows)
            .group_by("part", maintain_order=True)
            .agg(pl.col("request_id").first().alias("first"), pl.col("request_id").last())
        )
        self.bounds = list(zip(cuts["first"].to_list(), cuts["request_id"].to_list(), strict=True))
        # Each part's rows and row-hash sum, once it has been read and validated (the dict is
        # shared by the mapped copies): the fingerprint's, without another pass.
        self._validated: dict[int, tuple[int, int]] = {}
        rows = self._collect(0)
        first = self._validated_log(rows, scan.products, scan.users)
        self._validated[0] = (first.impressions.height, _hash_sum(first.impressions))
        self.products, self.users = first.products, first.users
        self.columns = first.impressions.columns
        self.empty = first.impressions.head(0)  # the log's validated columns and types

    def __len__(self) -> int:
        return len(self.bounds)

    def read(self, i: int) -> pl.DataFrame:
        """Part ``i``'s validated impressions (then ``prepare``d, where set). A part is
        validated the first time it is read; later reads take the types validation gave."""
        rows = self._collect(i)
        if i in self._validated:
            rows = rows.cast(self.empty.schema)
        else:
            rows = self._validated_log(rows, self.products, self.users).impressions
            self._validated[i] = (rows.height, _hash_sum(rows))
        return rows if self.prepare is None else self.prepare(rows)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return (self.read(i) for i in range(len(self)))

    def mapped(self, prepare: Callable[[pl.DataFrame], pl.DataFrame]) -> LogParts:
        """The same parts, each passed through ``prepare`` after the ones before."""
        parts = _copy(self)
        earlier = self.prepare
        parts.prepare = prepare if earlier is None else (lambda rows: prepare(earlier(rows)))
        return parts

    def sum(self, count: Callable, add: Callable):
        """``add`` over ``count`` of every part (the interface of a Dask cluster's
        :class:`datamodules.cluster.Partitions`), added as they come: one part and the sum
        so far in memory."""
        total = None
        for part in self:
            counted = count(part)
            total = counted if total is None else add([total, counted])
        return total

    def truth(self, i: int) -> pl.DataFrame | None:
        """The true relevance of part ``i``'s requests (None without a truth)."""
        if self.scan.truth_relevance is None:
            return None
        first, last = self.bounds[i]
        return self.scan.truth_relevance.filter(
            pl.col("request_id").is_between(pl.lit(first), pl.lit(last))
        )

    def _collect(self, i: int) -> pl.DataFrame:
        first, last = self.bounds[i]
        rows = self.scan.impressions.filter(
            pl.col("request_id").is_between(pl.lit(first), pl.lit(last))
        )
        return _read(rows.collect, self.scan.source("impressions"))

    def _validated_log(self, rows, products, users) -> SearchLog:
        return validate_log(SearchLog(products, rows, users, None, dict(self.scan.sources)))


def _copy(parts: LogParts) -> LogParts:
    copy = object.__new__(LogParts)
    copy.__dict__.update(parts.__dict__)
    return copy


def _read(collect: Callable, source: str):
    """A scan's result, with a one-line error naming the file when it cannot be read."""
    try:
        return collect()
    except (pl.exceptions.PolarsError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise LogValidationError(source, None, f"cannot be read: {first_line}") from None


# --------------------------------------------------------------------------- the build


@dataclass
class StreamedData:
    """What :func:`build_streamed` gives the DataModule."""

    log: SearchLog  # products, users, the impressions' columns (no rows) and no truth
    assignment: pl.DataFrame
    spec: FeatureSpec
    texts: list[str]
    arrays: dict[str, SplitArrays]
    train_counter: PartsCounter  # the training part's counts, for propensities
    table_hashes: list[tuple[str, int, int]]  # (schema, rows, row-hash sum) per table
    notes: list[str] = field(default_factory=list)


def build_streamed(
    scan: LogScan,
    part_rows: int,
    split: SplitConfig,
    labels_of: Callable[[SearchLog], LabelConfig],
    features_of: Callable[[SearchLog], FeatureConfig],
    sampling: SamplingConfig,
    similarity_of: Callable[[SearchLog, pl.DataFrame], pl.DataFrame | None],
    owner: object,
    stage: Callable[[str], None] = lambda name: None,
    progress: bool = False,
) -> StreamedData:
    """Split, label and featurise the log ``scan`` a part at a time; the arrays go to a
    temporary folder removed when ``owner`` (the DataModule) is garbage-collected.
    ``labels_of`` and ``features_of``: the configured labels and features for a log (of its
    tables: products, users and the impressions' columns); ``similarity_of(log, pairs)``:
    the query-title similarity of the distinct pairs, or None where nothing uses it;
    ``stage(name)``: called as the ``labels`` and the ``features`` stages begin."""
    parts = LogParts(scan, part_rows)
    if JUDGMENT in parts.columns:
        raise LogValidationError(
            scan.source("impressions"),
            JUDGMENT,
            "data.part_rows reads click logs; judged pairs are read whole (leave it unset)",
        )
    log_tables = SearchLog(parts.products, parts.empty, parts.users, None, dict(scan.sources))
    labels, features = labels_of(log_tables), features_of(log_tables)
    log.info(
        "%s: %d requests in %d parts", scan.source("impressions"), parts.requests.height, len(parts)
    )
    assignment = assign_splits(parts.requests.drop("rows"), split)
    pairs = _read(
        scan.impressions.select("query", "product_id").unique().collect,
        scan.source("impressions"),
    )
    similarity = similarity_of(log_tables, pairs)

    with_split = parts.mapped(partial(_with_split, assignment=assignment))
    counted = [c for c in parts.columns if c in COUNTED_COLUMNS]

    def counter(visible: list[str]) -> PartsCounter:
        return PartsCounter(with_split, counted, tuple(visible))

    stage("labels")
    labellings = None
    if labels.relevance != "behavioural":
        labellings = split_labellings(counter, similarity, labels)

    def labelled(rows: pl.DataFrame) -> pl.DataFrame:
        """A part's impressions with the labels of their split."""
        if labellings is None:
            grade = behavioural_grade(rows)
        else:
            grade = split_grades(rows, rows["_split"], labellings)
        return rows.drop("_split").with_columns(grade)

    keyed = with_split.mapped(labelled).mapped(
        partial(keyed_rows, assignment=assignment, log=log_tables, config=features, seed=split.seed)
    )

    def count(keys: list[str], values: list[str]) -> pl.DataFrame:
        return keyed.sum(
            partial(fold_sums, keys=keys, values=values), partial(add_fold_sums, keys=keys)
        )

    def count_all(counted: list) -> list[pl.DataFrame]:  # every count in one pass
        return keyed.sum(
            partial(many_fold_sums, counted=counted), partial(add_many_fold_sums, counted=counted)
        )

    stage("features")
    users_seen = None
    if "user_id" in parts.columns:
        users_seen = _read(
            scan.impressions.select(pl.col("user_id").unique()).collect,
            scan.source("impressions"),
        )["user_id"]
    plan = FeaturePlan.make(
        log_tables,
        keyed.read(0).schema,
        pairs,
        users_seen,
        features,
        count,
        similarity,
        count_all=count_all,
    )
    folder = Path(tempfile.mkdtemp(prefix="rankbench-arrays-"))
    weakref.finalize(owner, shutil.rmtree, folder, True)
    raw_parts, stats = _raw_parts(keyed, plan, folder, progress)
    truth = parts.scan.truth_relevance is not None
    # In the order of the labels of the whole log in memory: behaviours, relevance, truth.
    label_columns = [*log_tables.behaviours, "relevance", *(["true_relevance"] if truth else [])]
    spec = plan.spec(label_columns, int(parts.requests["rows"].max()))
    writer = _ArrayWriter(folder, spec, parts.requests["request_id"])
    sampled = _Sampled()
    truth_hashes = ("", 0, 0)  # the truth's schema, rows and row-hash sum, over the parts
    for i, raw in enumerate(raw_parts):
        rows = plan.finish(pl.read_parquet(raw), stats)
        raw.unlink()
        if truth:
            relevance = parts.truth(i).collect()
            schema, height, hashes = truth_hashes
            truth_hashes = (
                str(relevance.schema),
                height + relevance.height,
                (hashes + _hash_sum(relevance)) % 2**64,
            )
            rows = rows.join(
                relevance, on=["request_id", "product_id"], how="left", maintain_order="left"
            )
        writer.write(sampled.rows(rows, sampling))
    tables = _table_hashes(parts, truth_hashes if truth else None)
    notes = [sampled.note()] if sampling.enabled else []
    return StreamedData(
        log=log_tables,
        assignment=assignment,
        spec=spec,
        texts=plan.texts,
        arrays=writer.arrays(),
        train_counter=counter(["train"]),
        table_hashes=tables,
        notes=notes,
    )


def _with_split(rows: pl.DataFrame, assignment: pl.DataFrame) -> pl.DataFrame:
    return rows.join(
        assignment.rename({"split": "_split"}), on="request_id", how="left", maintain_order="left"
    )


def _raw_parts(keyed: LogParts, plan: FeaturePlan, folder: Path, progress: bool):
    """Each part's raw feature rows, written to ``folder``, and the standardisation of the
    numeric features from the training rows of every part."""
    from tqdm.auto import tqdm

    paths, moments = [], []
    for i in tqdm(range(len(keyed)), desc="featurising parts", disable=not progress):
        rows = plan.raw(keyed.read(i))
        moments.append(_moments(rows.filter(pl.col("split") == "train"), plan.numeric))
        paths.append(folder / f"raw-{i:05d}.parquet")
        rows.write_parquet(paths[-1], compression="lz4")
    return paths, _combined(moments, plan.numeric)


def _moments(train: pl.DataFrame, numeric) -> dict[str, tuple[int, float, float]]:
    """Per feature: values (missing and NaN left out), their mean and summed squared
    deviations from it."""
    out = {}
    for name in numeric:
        values = train[name].cast(pl.Float64).fill_nan(None).drop_nulls()
        n = len(values)
        mean = float(values.mean()) if n else 0.0
        out[name] = (n, mean, float(((values - mean) ** 2).sum()) if n else 0.0)
    return out


def _combined(moments: list[dict], numeric) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation (ddof 1) per feature from the parts' moments (Chan et
    al.'s pairwise update), as :func:`datamodules.features.standardisation_stats` gives them
    for the whole training part."""
    stats = {}
    for name in numeric:
        n, mean, squares = 0, 0.0, 0.0
        for part in moments:
            m, part_mean, part_squares = part[name]
            if not m:
                continue
            delta = part_mean - mean
            total = n + m
            mean += delta * m / total
            squares += part_squares + delta * delta * n * m / total
            n = total
        std = math.sqrt(squares / (n - 1)) if n > 1 else 1.0
        stats[name] = (mean if n else 0.0, std)
    return stats


class _Sampled:
    """Behaviour-aware sampling of the training rows, part by part (it draws per request)."""

    def __init__(self):
        self.train = self.kept = self.train_requests = self.kept_requests = 0

    def rows(self, rows: pl.DataFrame, sampling: SamplingConfig) -> pl.DataFrame:
        if not sampling.enabled:
            return rows
        is_train = pl.col("split") == "train"
        train = rows.filter(is_train)
        kept = train.filter(sample_mask(train, sampling))
        self.train += train.height
        self.kept += kept.height
        self.train_requests += train["request_id"].n_unique()
        self.kept_requests += kept["request_id"].n_unique()
        return pl.concat([kept, rows.filter(~is_train)]).sort("request_id", maintain_order=True)

    def note(self) -> str:
        return sampled_note(self.train, self.kept, self.train_requests, self.kept_requests)


def sampled_note(train: int, kept: int, train_requests: int, kept_requests: int) -> str:
    """How much of the training impressions and requests behaviour-aware sampling kept."""
    return (
        f"models train on a sample: {kept:,} of {train:,} training impressions "
        f"in {kept_requests:,} of {train_requests:,} requests "
        "(labels, features, validation and test use every row)"
    )


class _ArrayWriter:
    """Each split's arrays (:func:`datamodules.features.split_arrays`), appended part by part
    to raw files, then memory-mapped."""

    def __init__(self, folder: Path, spec: FeatureSpec, request_ids: pl.Series):
        self.folder, self.spec = folder, spec
        self.rows = dict.fromkeys(SPLITS, 0)
        self.groups = dict.fromkeys(SPLITS, 0)
        self.shapes: dict[tuple[str, str], tuple[np.dtype, tuple[int, ...]]] = {}
        # Text request ids as fixed-width text, so that they map like the numbers do.
        self.request_dtype = np.dtype(np.int64)
        if not request_ids.dtype.is_integer():
            width = request_ids.cast(pl.String).str.len_chars().max() or 1
            self.request_dtype = np.dtype(f"<U{width}")

    def write(self, rows: pl.DataFrame) -> None:
        for split in SPLITS:
            part = split_arrays(rows.filter(pl.col("split") == split), self.spec, split)
            arrays = {
                "numeric": part.numeric,
                "categorical": part.categorical,
                "text_ids": part.text_ids,
                "group": part.group + self.groups[split],
                "position": part.position,
                "request_id": part.request_id.astype(self.request_dtype),
                **{f"label-{name}": values for name, values in part.labels.items()},
            }
            for name, values in arrays.items():
                values = np.ascontiguousarray(values)
                self.shapes[(split, name)] = (values.dtype, values.shape[1:])
                with open(self.folder / f"{split}-{name}.bin", "ab") as out:
                    out.write(values.tobytes())
            self.rows[split] += part.n_rows
            self.groups[split] += part.n_groups

    def arrays(self) -> dict[str, SplitArrays]:
        out = {}
        for split in SPLITS:
            read = partial(self._mapped, split)
            labels = [
                k.removeprefix("label-")
                for s, k in self.shapes
                if s == split and k.startswith("label-")
            ]
            out[split] = SplitArrays(
                numeric=read("numeric"),
                categorical=read("categorical"),
                text_ids=read("text_ids"),
                labels={name: read(f"label-{name}") for name in labels},
                group=read("group"),
                request_id=read("request_id"),
                position=read("position"),
            )
        return out

    def _mapped(self, split: str, name: str) -> np.ndarray:
        dtype, width = self.shapes[(split, name)]
        shape = (self.rows[split], *width)
        if not np.prod(shape):  # nothing to map (numpy cannot map an empty file)
            return np.zeros(shape, dtype=dtype)
        return np.memmap(self.folder / f"{split}-{name}.bin", dtype=dtype, mode="r", shape=shape)


def _table_hashes(parts: LogParts, truth: tuple[str, int, int] | None) -> list:
    """Schema, rows and the sum of row hashes of each table (the impressions' and the truth's
    summed over the parts as they were read), in the order of the DataModule's fingerprint of
    a whole log."""

    def whole(table: pl.DataFrame) -> tuple[str, int, int]:
        return str(table.schema), table.height, _hash_sum(table)

    for i in range(len(parts)):  # every part has been read; this reads none again
        if i not in parts._validated:
            parts.read(i)
    counted = parts._validated.values()
    impressions = sum(n for n, _ in counted), sum(h for _, h in counted) % 2**64
    tables = [whole(parts.products), (str(parts.empty.schema), *impressions)]
    if parts.users is not None:
        tables.append(whole(parts.users))
    if truth is not None:
        tables += [truth, whole(parts.scan.truth_examination)]
    return tables


def _hash_sum(table: pl.DataFrame) -> int:
    """The sum of the row hashes modulo 2^64 (in two 32-bit halves, so that parts add up)."""
    hashes = table.hash_rows(seed=0).to_numpy()
    low = int((hashes & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    high = int((hashes >> np.uint64(32)).sum(dtype=np.uint64))
    return ((high << 32) + low) % 2**64  # as polars sums them
