"""When a finished run can be reused: the same config, code, data, split, lock and (for a
model whose numbers depend on it) thread count as the run would have now."""

from __future__ import annotations

from benchmarks.records import code_hash, config_hash, lock_hash, package_versions
from benchmarks.spec import RunSpec
from datamodules import SearchLogDataModule
from datamodules.search_log import HOW_READ
from datamodules.settings import as_mapping
from models import get_ranker


def run_settings(spec: RunSpec, datamodule: SearchLogDataModule, model: str) -> dict:
    """What a model's run depends on besides code, data and environment: its record's
    ``config``, whose hash is the record's ``config_hash``."""
    # Where the data sits is not what it is (the fingerprint says that): a fresh clone that
    # reads the same files from another folder reuses the records.
    dataset = {k: v for k, v in datamodule.source.describe().items() if k != "path"}
    settings = {
        "dataset": dataset,
        # Reading the log whole or a part at a time gives the same data (the fingerprint).
        "data": {k: v for k, v in as_mapping(spec.data).items() if k not in HOW_READ},
        "model": model,
        "model_config": as_mapping(spec.ranker_settings(model)),
        "metrics": as_mapping(spec.metrics),
    }
    ranker = get_ranker(model)
    if ranker.uses_trainer:  # a neural model: where it trains is part of its run
        settings["trainer"] = as_mapping(spec.trainer)
    if spec.dask is not None and getattr(ranker, "trains_on_dask", False):
        # Workers bin their own rows, so the trees differ a little from one process's; the
        # labels and features do not (the same counts), so other models' records are shared.
        settings["dask"] = True
    return settings


def stale_reasons(
    record: dict, datamodule: SearchLogDataModule, spec: RunSpec, threads: int
) -> list[str]:
    """Why ``record`` is not what this code, data, config, lock and thread count would make
    now (empty: it is valid, and rerunning would redo it)."""
    try:
        ranker = get_ranker(record.get("model", ""))
    except ValueError:
        return ["model not registered in this run (--import its plugin)"]
    reasons = []
    if record.get("config_hash") != config_hash(run_settings(spec, datamodule, ranker.name)):
        reasons.append("config")
    if record.get("code_hash") != code_hash(ranker):
        reasons.append("code")
    if record.get("dataset_fingerprint") != datamodule.fingerprint:
        reasons.append("data")
    if record.get("split_hash") != datamodule.split_hash:
        reasons.append("split")
    made_in = record.get("environment") or {}
    if made_in.get("lock") != lock_hash():
        reasons.append("lock")
    if record.get("packages") != package_versions():
        reasons.append("packages")
    if not ranker.thread_independent and made_in.get("threads") != threads:
        reasons.append(f"threads ({made_in.get('threads')}; now {threads})")
    return reasons
