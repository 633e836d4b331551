"""``SearchLogDataModule``: one log, validated, labelled, featurised and split once for all.

Every model of a benchmark reads the same instance: the same rows in the same order, the
same request-level splits (recorded by ``split_hash``) and the same features. Neural rankers
take its Lightning dataloaders (whole query groups per item); tree and sklearn-style rankers
take :meth:`arrays` (numpy, one row per impression, with group ids).

Given a Dask cluster (``datamodules/cluster.py``), the labels' and the behaviour features'
counts are made on its workers, with the same result; models that train on Dask (XGBoost)
take its client, :attr:`SearchLogDataModule.dask_client`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import lightning as L
import numpy as np
import polars as pl
from torch.utils.data import DataLoader

from datamodules.batches import QueryGroupDataset, SplitArrays, collate_groups
from datamodules.cluster import DaskCluster
from datamodules.features import (
    BuiltFeatures,
    FeatureConfig,
    FeatureSpec,
    build_features,
    split_arrays,
)
from datamodules.judged import JUDGMENT, is_judged, judged_assignment, validate_judged_log
from datamodules.labels import (
    LabelConfig,
    labels_for,
    pair_similarities,
    relevance_labels,
    similarities_of_pairs,
)
from datamodules.semi_synthetic import SimulateClicks, simulate_click_log, simulation_note
from datamodules.splits import SPLITS, SplitConfig, assign_splits, split_hash
from datamodules.streamed_log import StreamedData, build_streamed, sampled_note
from datamodules.tables import SearchLog, validate_log
from datamodules.text_encoding import TextEncoder
from labeling.propensity import PropensityEstimate, estimate_propensities
from labeling.sampling import sample_mask

log = logging.getLogger(__name__)


class LogSource(Protocol):
    """Where a search log comes from: the simulator, a folder of files, an adapter."""

    name: str

    def load(self) -> SearchLog: ...

    def describe(self) -> dict: ...


# Settings of how a log is read, not of what the data are: left out of its identity.
HOW_READ = ("part_rows",)


@dataclass(frozen=True)
class DataConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    batch_size: int = 64  # query groups per batch
    num_workers: int = 0
    # Impressions per part when a log folder of Parquet tables is read a part at a time, in
    # bounded memory, its arrays memory-mapped (datamodules/streamed_log.py); None: whole.
    part_rows: int | None = None

    def __post_init__(self):
        if self.part_rows is not None and self.part_rows < 1:
            raise ValueError(f"data.part_rows must be at least 1 or null, not {self.part_rows}")

    def as_dict(self) -> dict:
        """The settings that make the data: how it is read (``HOW_READ``) is not one."""
        return {k: v for k, v in asdict(self).items() if k not in HOW_READ}


class SearchLogDataModule(L.LightningDataModule):
    def __init__(
        self,
        source: LogSource,
        config: DataConfig | None = None,
        progress: bool = False,
        cluster: DaskCluster | None = None,
        on_stage: Callable[[str], None] | None = None,
    ):
        """``on_stage(name)`` is called as :meth:`setup` begins each stage: ``load`` (read,
        validate, split, text similarity), ``labels``, ``features`` (and the arrays), then
        ``done``."""
        super().__init__()
        self.source = source
        self.config = config or DataConfig()
        self.progress = progress
        self.cluster = cluster  # where the log's counts are made; None: in this process
        self._built: BuiltFeatures | None = None
        self._arrays: dict[str, SplitArrays] = {}
        self._log: SearchLog | None = None
        self._fingerprint: str | None = None
        self._encoders: dict[str | None, TextEncoder] = {}
        self._train_propensities: PropensityEstimate | None = None
        self._streamed: StreamedData | None = None  # set when read a part at a time
        self.notes: list[str] = []  # what the log lacks, and what is skipped for it
        self.on_stage = on_stage

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        """Load, validate, label, split and featurise; later calls are free."""
        if self._built is not None:
            return
        self._stage("load")
        if self.config.part_rows is not None:
            self._setup_streamed()
            self._stage("done")
            return
        search_log, assignment, judged = load_split_log(self.source, self.config.split)
        simulation = getattr(self.source, "click_simulation", None)
        features = self._feature_config(search_log)
        similarity = self._similarity(search_log, features, judged)
        self._stage("labels")
        labels = self._labels(search_log, assignment, similarity, judged)
        self._stage("features")
        self._built = build_features(
            search_log,
            assignment,
            labels,
            features,
            seed=self.config.split.seed,
            similarity=similarity,
            cluster=self.cluster,
        )
        self._built.rows, sampled = self._sampled(self._built.rows)
        self._log = search_log
        # The adapter's own notes (rows it dropped, ...) first, then what the log lacks.
        self.notes = [*getattr(self.source, "notes", []), *dataset_notes(search_log, simulation)]
        if sampled:
            self.notes.append(sampled)
        self._assignment = assignment
        self._arrays = {name: self._split_arrays(name) for name in SPLITS}
        self._stage("done")
        log.info(
            "%s: %d impressions, %d requests (train/val/test %s), split %s",
            self.source.name,
            search_log.impressions.height,
            assignment.height,
            "/".join(str(self._arrays[s].n_groups) for s in SPLITS),
            self.split_hash,
        )

    def _setup_streamed(self) -> None:
        """:meth:`setup` for a log folder read a part at a time (``data.part_rows``)."""
        scan = getattr(self.source, "scan", None)
        if scan is None:
            raise ValueError(
                f"data.part_rows reads the simulator's log or a log folder of Parquet tables "
                f"(--dataset logdir), not {self.source.name}; leave data.part_rows unset"
            )
        if self.cluster is not None:
            raise ValueError("data.part_rows and --dask: use one of them (see README)")

        def similarity_of(search_log: SearchLog, pairs: pl.DataFrame):
            features = self._feature_config(search_log)
            return self._similarity(search_log, features, pairs=pairs)

        data = build_streamed(
            scan(),
            self.config.part_rows,
            self.config.split,
            self._label_config,
            self._feature_config,
            self.config.labels.sampling,
            similarity_of,
            owner=self,
            stage=self._stage,
            progress=self.progress,
        )
        self._streamed = data
        self._built = BuiltFeatures(rows=None, spec=data.spec, texts=data.texts)
        self._log, self._assignment, self._arrays = data.log, data.assignment, data.arrays
        self.notes = [*getattr(self.source, "notes", []), *dataset_notes(data.log), *data.notes]
        log.info(
            "%s: %d impressions, %d requests (train/val/test %s), split %s, read in parts",
            self.source.name,
            sum(self._arrays[s].n_rows for s in SPLITS),
            data.assignment.height,
            "/".join(str(self._arrays[s].n_groups) for s in SPLITS),
            self.split_hash,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ------------------------------------------------------------------ what models read

    @property
    def spec(self) -> FeatureSpec:
        return self._require_setup().spec

    @property
    def texts(self) -> list[str]:
        return self._require_setup().texts

    @property
    def log(self) -> SearchLog:
        self._require_setup()
        return self._log

    def arrays(self, split: str) -> SplitArrays:
        self._require_setup()
        if split not in self._arrays:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return self._arrays[split]

    def rows(self, split: str) -> pl.DataFrame:
        """The split's rows as a table (keys, features, labels), in array row order."""
        rows = self._require_setup().rows
        if rows is None:
            raise ValueError(
                "the rows are not kept when the log is read a part at a time "
                "(data.part_rows); read arrays(split)"
            )
        return rows.filter(pl.col("split") == split)

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return self._loader(split, shuffle)

    @property
    def dask_client(self):
        """The Dask cluster's client, for models that train on it (None without a cluster)."""
        return None if self.cluster is None else self.cluster.client

    @property
    def has_logged_positions(self) -> bool:
        """Whether ``position`` is where each item was shown: not in a judged dataset, whose
        ``position`` is only the pairs' order in its files."""
        return not is_judged(self.log)

    def training_propensities(self) -> PropensityEstimate:
        """The examination propensity per position, estimated from the training part of the
        log only, by the labeling's estimator and method (``labels.labeling.propensity_method``);
        never from a simulator's truth. Estimated once per DataModule (it is deterministic)."""
        if not self.has_logged_positions:
            raise ValueError(
                "cannot estimate position bias: this dataset is judged pairs, whose 'position' "
                "is the order of its files, not where items were shown"
            )
        if self._train_propensities is None and self._streamed is not None:
            self._train_propensities = estimate_propensities(
                self._streamed.train_counter,
                method=self.config.labels.labeling.propensity_method,
            )
        if self._train_propensities is None:
            train = self._assignment.filter(pl.col("split") == "train")["request_id"]
            impressions = self._log.impressions.filter(pl.col("request_id").is_in(train.implode()))
            self._train_propensities = estimate_propensities(
                impressions, method=self.config.labels.labeling.propensity_method
            )
        return self._train_propensities

    def text_encoder(self, name: str | None = None) -> TextEncoder:
        """The text encoder of the labels and features (``name`` None), or another one by
        name with the same length, cache and device settings; one instance each, so models
        share what they derive from it (and its cache) across seeds."""
        if name not in self._encoders:
            config = self.config.labels.encoder
            self._encoders[name] = TextEncoder(
                config if name is None else replace(config, name=name)
            )
        return self._encoders[name]

    # ------------------------------------------------------------------ what records hold

    @property
    def split_hash(self) -> str:
        self._require_setup()
        return split_hash(self._assignment)

    @property
    def fingerprint(self) -> str:
        """A hash of the tables (the truth that scores them included), of the settings that
        turned them into features and labels, and of the result: every split's arrays and the
        texts their ids point to. Two DataModules with the same fingerprint feed a model
        exactly the same data, whatever code built it."""
        self._require_setup()
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for split in SPLITS:
            arrays = self._arrays[split]
            for name in ("numeric", "categorical", "text_ids", "group", "position"):
                digest.update(np.ascontiguousarray(getattr(arrays, name)).tobytes())
            digest.update(np.asarray(arrays.request_id).astype(str).astype(bytes).tobytes())
            for name, values in sorted(arrays.labels.items()):
                digest.update(name.encode() + np.ascontiguousarray(values).tobytes())
        for text in self._built.texts:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(repr(self._built.spec).encode())
        for schema, height, hashes in self._table_hashes():
            digest.update(schema.encode())
            digest.update(str(height).encode())
            digest.update(str(hashes).encode())
        digest.update(repr(self.config.as_dict()).encode())
        return digest.hexdigest()[:16]

    def _stage(self, name: str) -> None:
        """Tell ``on_stage`` that stage ``name`` begins."""
        if self.on_stage is not None:
            self.on_stage(name)

    def _table_hashes(self) -> list[tuple[str, int, int]]:
        """Schema, rows and the sum of row hashes of each table of the log."""
        if self._streamed is not None:
            return self._streamed.table_hashes
        tables = [self._log.products, self._log.impressions]
        if self._log.users is not None:
            tables.append(self._log.users)
        if self._log.truth is not None:
            tables += [self._log.truth.relevance, self._log.truth.examination]
        return [(str(t.schema), t.height, int(t.hash_rows(seed=0).sum())) for t in tables]

    # ------------------------------------------------------------------ internals

    def _require_setup(self) -> BuiltFeatures:
        if self._built is None:
            raise RuntimeError("call datamodule.setup() first")
        return self._built

    def _feature_config(self, search_log: SearchLog) -> FeatureConfig:
        """The configured features, less the text-match ones when products have no title."""
        features = self.config.features
        if "title" in search_log.products.columns:
            return features
        return replace(features, lexical_overlap=False, text_similarity=False)

    def _label_config(self, search_log: SearchLog) -> LabelConfig:
        return labels_for(self.config.labels, search_log)

    def _similarity(
        self,
        search_log: SearchLog,
        features: FeatureConfig,
        judged: bool = False,
        pairs: pl.DataFrame | None = None,
    ) -> pl.DataFrame | None:
        """Query-title similarity per pair, when the labels or the features need it;
        ``pairs``: the log's distinct (query, product_id), where its rows are not at hand."""
        labels = self._label_config(search_log)
        derives = not judged and labels.relevance == "derived" and labels.labeling.use_similarity
        if not (features.text_similarity or derives):
            return None
        if pairs is not None:
            return similarities_of_pairs(
                pairs, search_log.products, self.text_encoder(), self.progress
            )
        return pair_similarities(search_log, self.text_encoder(), self.progress)

    def _labels(
        self,
        search_log: SearchLog,
        assignment: pl.DataFrame,
        similarity: pl.DataFrame | None,
        judged: bool = False,
    ) -> pl.DataFrame:
        """Task labels (and true relevance where known), one row per impression."""
        impressions = search_log.impressions
        if judged:  # the people's grades are the relevance task; nothing is derived
            return impressions.select(pl.col(JUDGMENT).alias("relevance"))
        labels = impressions.select(list(search_log.behaviours)).with_columns(
            relevance_labels(
                search_log, assignment, self._label_config(search_log), similarity, self.cluster
            )
        )
        if search_log.truth is not None:
            truth = impressions.select("request_id", "product_id").join(
                search_log.truth.relevance,
                on=["request_id", "product_id"],
                how="left",
                maintain_order="left",
            )
            labels = labels.with_columns(truth["true_relevance"])
        return labels

    def _sampled(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
        """Behaviour-aware sampling of the training rows (other splits stay whole), and a
        note of how much it kept (None when sampling is off)."""
        sampling = self.config.labels.sampling
        if not sampling.enabled:
            return rows, None
        train = rows.filter(pl.col("split") == "train")
        kept = train.filter(sample_mask(train, sampling))
        rows = pl.concat([kept, rows.filter(pl.col("split") != "train")])
        return rows.sort("request_id", maintain_order=True), sampling_note(train, kept)

    def _split_arrays(self, split: str) -> SplitArrays:
        return split_arrays(self.rows(split), self._built.spec, split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = QueryGroupDataset(self.arrays(split))
        sampler = _process_share(dataset, shuffle)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            collate_fn=collate_groups,
            num_workers=self.config.num_workers,
        )


def load_split_log(source: LogSource, split: SplitConfig) -> tuple[SearchLog, pl.DataFrame, bool]:
    """A source's validated log, its ``request_id -> split`` and whether it is judged pairs.
    A judged dataset with simulated clicks is split by query first, then becomes the click
    log of its sessions (each in its query's part)."""
    raw = source.load()
    judged = is_judged(raw)
    search_log = validate_judged_log(raw) if judged else validate_log(raw)
    if not judged:
        return search_log, assign_splits(search_log.impressions, split), False
    assignment = judged_assignment(search_log.impressions, split)
    simulation = getattr(source, "click_simulation", None)
    if simulation is None:
        return search_log, assignment, True
    search_log, assignment = simulate_click_log(search_log, assignment, simulation)
    return search_log, assignment, False


def _process_share(dataset: QueryGroupDataset, shuffle: bool):
    """Under several processes (DDP), this process's share of the query groups, each group
    whole: training groups reshuffled every epoch with the seed every process shares (a few
    repeated so the shares are equal), evaluation groups dealt round-robin without repeats,
    so that sums over the processes count every group once. None for one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    rank, size = dist.get_rank(), dist.get_world_size()
    if shuffle:
        from torch.utils.data import DistributedSampler

        seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))  # the run's seed, on every process
        return DistributedSampler(dataset, size, rank, shuffle=True, seed=seed)
    return range(rank, len(dataset), size)


def sampling_note(train: pl.DataFrame, kept: pl.DataFrame) -> str:
    """How much of the training rows ``train`` behaviour-aware sampling ``kept``."""
    return sampled_note(
        train.height, kept.height, train["request_id"].n_unique(), kept["request_id"].n_unique()
    )


def dataset_notes(search_log: SearchLog, simulation: SimulateClicks | None = None) -> list[str]:
    """What the log lacks, and which tasks and features are skipped because of it;
    ``simulation``: the settings of semi-synthetic clicks the log was made with."""
    notes = [simulation_note(simulation)] if simulation is not None else []
    impressions = search_log.impressions
    if JUDGMENT in impressions.columns:
        notes.append(
            "judged pairs, not a click log: relevance is the dataset's own grade, the only "
            "task; no behaviour features"
        )
        if "title" not in search_log.products.columns:
            notes.append("no product text: the text-match features are off")
        return notes
    if "user_id" not in impressions.columns:
        notes.append("no user_id: user attributes and user-history features are skipped")
    elif search_log.users is None:
        notes.append("no users table: user attributes are skipped (history features stay)")
    for behaviour in ("add_to_cart", "purchase"):
        if behaviour not in impressions.columns:
            notes.append(f"no {behaviour}: its task and rate features are skipped")
    if not search_log.has_timestamps and simulation is None:
        notes.append("no timestamps: the split is by request at random, not by time")
    if "title" not in search_log.products.columns:
        notes.append("no product text: the text-match features are off, labels use behaviour only")
    elif "description" not in search_log.products.columns:
        notes.append("no product description: query and title are the only texts")
    attributes = [
        c
        for c, dtype in search_log.products.schema.items()
        if c not in ("product_id", "title", "description")
    ]
    if not attributes:
        notes.append("no product attributes (price, rating, brand...): none are features")
    return notes
