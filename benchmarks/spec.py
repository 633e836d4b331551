"""The run specification: every setting a bench, ablate, tune or label command uses, typed:
dataset, data (splits, features, labels, the text encoder), models and their settings, seeds,
threads, the Dask cluster, the Trainer's devices, metrics, the tuning budget and W&B.

A :class:`RunSpec` is built once (``benchmarks/config.py``: the packaged defaults, the
dataset's defaults, the user's file and the command line) and read by the runner, the
ablation and the label report; none of them re-reads the YAML. Its fields mirror the YAML
file (``benchmarks/configs/bench.yaml`` documents them, and a test keeps that file equal to
the defaults written here and in the sections' own dataclasses). An ablation variant is a
changed copy (:meth:`RunSpec.changed`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from benchmarks.metric_conventions import CONVENTIONS, Convention
from datamodules.cluster import check_address
from datamodules.search_log import DataConfig
from datamodules.settings import as_mapping, typed_settings
from datamodules.simulator.config import DEFAULT_PRESET
from datamodules.sources import DATASETS
from models.devices import TrainerConfig

Dataset = Literal[DATASETS]  # the sources' names, checked as a choice
# The packaged models, in the packaged order: the order of a summary table's rows.
DEFAULT_MODELS = ("xgboost", "tabnet", "ft_transformer", "dcn_v2", "mmoe", "mtl_tinybert")


@dataclass(frozen=True)
class MetricsSpec:
    ks: tuple[int, ...] = (1, 3, 5, 10)
    gain: Literal["exponential", "linear"] = "exponential"  # 2^rel - 1, or rel
    alpha: float = 0.05  # significance level of the paired test over queries
    # How queries without a positive, ties, the discount and short lists are scored
    # (benchmarks/metric_conventions.py): rankbench's, or the LETOR 4.0 script's.
    convention: Literal["rankbench", "letor4"] = "rankbench"
    empty_queries: Literal["skip", "zero", "one"] | None = None  # None: the convention's
    ties: Literal["average", "file_order"] | None = None  # None: the convention's
    # What the paired test and the bootstrap resample: requests, or query texts (a query's
    # requests are not independent where it repeats); auto: query texts where the test
    # split has at most half as many distinct queries as requests (e.g. RetroTech).
    resample: Literal["auto", "request", "query"] = "auto"

    def scoring(self) -> Convention:
        """The convention with the explicit choices applied."""
        chosen = {"empty_queries": self.empty_queries, "ties": self.ties}
        return replace(CONVENTIONS[self.convention], **{k: v for k, v in chosen.items() if v})

    def __post_init__(self):
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError("metrics.ks must be a list of positive integers, e.g. [1, 3, 5, 10]")
        if not 0 < self.alpha < 1:
            raise ValueError("metrics.alpha must lie between 0 and 1")


@dataclass(frozen=True)
class WandbSpec:
    mode: Literal["offline", "online", "disabled"] = "offline"  # offline: `wandb sync` later
    project: str = "rankbench"


@dataclass(frozen=True)
class TuneSpec:
    """``rankbench tune``'s budget, the same for every model: ``trials`` trials, stopped
    early once the study's trials have taken ``timeout_s`` seconds (None: no cap). Each trial
    fits the model with the settings the sampler draws and scores the validation split's
    NDCG@10 of the ``relevance`` label (the spec's metric convention and gain): never the
    test split, never the simulator's true relevance. No trial is pruned: trees report no
    epochs to prune on, so pruning would give the networks another budget than the trees."""

    trials: int = 20
    timeout_s: float | None = 3600.0  # per model, over its study's trials (resumes included)
    sampler: Literal["tpe", "random"] = "tpe"  # Optuna's TPE (10 random trials first), random
    seed: int = 0  # the sampler's seed, and the model seed of every trial's fit

    def __post_init__(self):
        if self.trials < 1:
            raise ValueError(
                f"tune.trials must be at least 1 (the same number for every model), "
                f"not {self.trials}"
            )
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"tune.timeout_s must be positive or null, not {self.timeout_s}")


@dataclass(frozen=True)
class RunSpec:
    name: str | None = None  # results go to <output>/<name>; None: from the dataset
    dataset: Dataset = "simulator"
    preset: str = DEFAULT_PRESET  # the simulator's preset
    data_path: str | None = None  # the dataset's folder, or the mapping file of `files`
    simulator: dict[str, Any] = field(default_factory=dict)  # overrides of the preset
    dataset_options: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    threads: int | None = None  # None: the cores this process may use
    # Model x seed runs at a time, each in its own process with ``threads`` threads
    # (benchmarks/run_pool.py); "auto": the cores // threads.
    jobs: int | Literal["auto"] = 1
    # A Dask cluster for the labels' and behaviour features' counts and for XGBoost: "local"
    # (a LocalCluster, one worker per core) or a scheduler's address; None: none.
    dask: str | None = None
    # Per-model settings, checked against each ranker's own ``Settings`` dataclass.
    model_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # where neural models train
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    output: str = "results"
    wandb: WandbSpec = field(default_factory=WandbSpec)
    tune: TuneSpec = field(default_factory=TuneSpec)  # rankbench tune's budget

    def __post_init__(self):
        if not self.models:
            raise ValueError("models must name at least one model, e.g. [xgboost]")
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed, e.g. [0, 1, 2]")
        if self.dask is not None:
            check_address(self.dask)
        if self.data.part_rows is not None and self.dataset not in ("simulator", "logdir"):
            raise ValueError(
                f"data.part_rows reads the simulator's log or a log folder of Parquet tables "
                f"(--dataset logdir), not {self.dataset}"
            )
        if self.data.part_rows is not None and self.dask is not None:
            raise ValueError("data.part_rows and --dask: use one of them (README, Scaling)")
        if isinstance(self.jobs, int) and self.jobs < 1:
            raise ValueError(f"jobs must be at least 1 (runs at a time), or auto, not {self.jobs}")

    @property
    def folder(self) -> Path:
        """Where the benchmark's results go."""
        return Path(self.output) / str(self.name)

    def ranker_settings(self, model: str):
        """``model``'s typed settings: its defaults with this spec's ``model_config``."""
        from models import get_ranker

        settings = get_ranker(model).Settings
        return typed_settings(settings, self.model_config.get(model), f"model_config.{model}")

    def changed(self, **changes) -> RunSpec:
        """A copy with some fields replaced (an ablation variant, a one-model run)."""
        return dataclasses.replace(self, **changes)

    def as_mapping(self) -> dict:
        """Plain data, as a YAML file would hold it."""
        return as_mapping(self)


def build_spec(settings: dict) -> RunSpec:
    """The typed specification of merged settings; one line naming the setting otherwise.
    Every model under ``model_config`` must be registered and its settings its own."""
    spec = typed_settings(RunSpec, settings, "")
    from models import REGISTRY

    for model in (*spec.models, *spec.model_config):
        if model not in REGISTRY:
            where = (
                f"model_config.{model}: unknown model"
                if model in spec.model_config
                else (f"models: unknown model {model!r}")
            )
            raise ValueError(f"{where}; registered: {', '.join(sorted(REGISTRY))}")
    # Each model's settings as typed values (``1e-4`` a number), the keys given kept.
    typed = {}
    for model, given in spec.model_config.items():
        resolved = as_mapping(spec.ranker_settings(model))
        typed[model] = {key: resolved[key] for key in given}
    return spec.changed(model_config=typed)
