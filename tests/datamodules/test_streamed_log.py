"""A log folder read a part at a time (``data.part_rows``): the same splits, labels, features
and fingerprint as the whole log in memory, arrays memory-mapped, and bad input named."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from datamodules import SearchLogDataModule
from datamodules.search_log import SPLITS, DataConfig
from datamodules.simulator import preset, write_log
from datamodules.sources import LogFolderSource, SimulatorSource
from datamodules.tables import LogValidationError
from labeling.sampling import SamplingConfig
from tests.conftest import WITHOUT_TEXT


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-log")
    write_log(preset("tiny"), folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def ci_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ci-log")
    write_log(preset("ci", chunk_requests=700), folder, progress=False)  # three files
    return folder


def _setup(source, config: DataConfig) -> SearchLogDataModule:
    datamodule = SearchLogDataModule(source, config)
    datamodule.setup()
    return datamodule


def _assert_same_arrays(whole: SearchLogDataModule, parts: SearchLogDataModule) -> None:
    assert parts.split_hash == whole.split_hash
    assert parts.spec == whole.spec
    assert parts.texts == whole.texts
    for split in SPLITS:
        a, b = whole.arrays(split), parts.arrays(split)
        assert isinstance(b.numeric, np.memmap)
        np.testing.assert_allclose(b.numeric, a.numeric, rtol=0, atol=1e-6)
        for name in ("categorical", "text_ids", "group", "position"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
        np.testing.assert_array_equal(b.request_id.astype(str), a.request_id.astype(str))
        assert b.labels.keys() == a.labels.keys()
        for name in a.labels:
            np.testing.assert_array_equal(b.labels[name], a.labels[name], err_msg=name)


@pytest.mark.parametrize("source", ["logdir", "simulator"])
def test_tiny_in_parts_is_the_simulator_log_in_memory(tiny_folder, source):
    """Several parts, text on: every array, the propensities and the fingerprint are those of
    the simulator's log in memory, so records are shared between the two."""
    in_memory = _setup(SimulatorSource("tiny"), DataConfig())
    read = LogFolderSource(str(tiny_folder)) if source == "logdir" else SimulatorSource("tiny")
    parts = _setup(read, DataConfig(part_rows=300))
    assert parts._streamed is not None and len(parts._streamed.assignment) == 200
    _assert_same_arrays(in_memory, parts)
    assert parts.fingerprint == in_memory.fingerprint
    assert parts.training_propensities().curve.equals(in_memory.training_propensities().curve)
    with pytest.raises(ValueError, match="read arrays"):
        parts.rows("train")


@pytest.mark.parametrize("part_rows", [700, 4_000, 10**9])
def test_ci_labels_and_features_do_not_depend_on_the_parts(ci_folder, part_rows):
    """Many parts, parts that cut across files, and one part for the whole log."""
    whole = _setup(LogFolderSource(str(ci_folder)), WITHOUT_TEXT)
    parts = _setup(
        LogFolderSource(str(ci_folder)), dataclasses.replace(WITHOUT_TEXT, part_rows=part_rows)
    )
    _assert_same_arrays(whole, parts)


def test_sampling_and_behavioural_grades_in_parts(ci_folder):
    labels = dataclasses.replace(
        WITHOUT_TEXT.labels,
        relevance="behavioural",
        sampling=SamplingConfig(enabled=True, nothing=0.2, negatives_per_request=3),
    )
    config = dataclasses.replace(WITHOUT_TEXT, labels=labels)
    whole = _setup(LogFolderSource(str(ci_folder)), config)
    parts = _setup(LogFolderSource(str(ci_folder)), dataclasses.replace(config, part_rows=3_000))
    _assert_same_arrays(whole, parts)
    assert any(note.startswith("models train on a sample") for note in parts.notes)
    assert [n for n in parts.notes if "sample" in n] == [n for n in whole.notes if "sample" in n]


def test_text_request_ids_in_parts(tmp_path, tiny_folder):
    """Request ids written as text map as fixed-width text and sort the same way."""
    for name in ("products", "users", "truth_examination"):
        (tmp_path / f"{name}.parquet").write_bytes((tiny_folder / f"{name}.parquet").read_bytes())
    as_text = pl.format("r{}", pl.col("request_id").cast(pl.String).str.zfill(5))
    for table in ("impressions", "truth_relevance"):
        rows = pl.read_parquet(tiny_folder / table)
        rows.with_columns(request_id=as_text).write_parquet(tmp_path / f"{table}.parquet")
    whole = _setup(LogFolderSource(str(tmp_path)), WITHOUT_TEXT)
    parts = _setup(LogFolderSource(str(tmp_path)), dataclasses.replace(WITHOUT_TEXT, part_rows=500))
    _assert_same_arrays(whole, parts)
    assert parts.arrays("test").request_id.dtype.kind == "U"
    assert parts.fingerprint == whole.fingerprint


def test_a_bad_row_in_a_later_part_is_named(tmp_path, tiny_folder):
    for name in ("products", "users"):
        (tmp_path / f"{name}.parquet").write_bytes((tiny_folder / f"{name}.parquet").read_bytes())
    rows = pl.read_parquet(tiny_folder / "impressions")
    last = rows["request_id"].max()
    bad = pl.when(pl.col("request_id") == last).then(0).otherwise(pl.col("position"))
    rows.with_columns(position=bad).write_parquet(tmp_path / "impressions.parquet")
    parts = dataclasses.replace(WITHOUT_TEXT, part_rows=300)
    with pytest.raises(LogValidationError, match=r"impressions\.parquet.*position.*1-based"):
        _setup(LogFolderSource(str(tmp_path)), parts)


def test_csv_impressions_are_refused_in_parts(tmp_path, tiny_folder):
    (tmp_path / "products.parquet").write_bytes((tiny_folder / "products.parquet").read_bytes())
    pl.read_parquet(tiny_folder / "impressions").drop("timestamp").write_csv(
        tmp_path / "impressions.csv"
    )
    with pytest.raises(LogValidationError, match=r"impressions\.csv.*Parquet only"):
        _setup(LogFolderSource(str(tmp_path)), DataConfig(part_rows=100))


def test_part_rows_needs_a_log_folder_and_one_process(tmp_path, tiny_folder, capsys):
    with pytest.raises(ValueError, match="part_rows must be at least 1"):
        DataConfig(part_rows=0)
    out = str(tmp_path / "out")
    args = ["bench", "--dataset", "letor", "--data", str(tmp_path), "--out", out]
    assert main([*args, "--set", "data.part_rows=100"]) == 2
    assert "data.part_rows reads the simulator's log or a log folder" in capsys.readouterr().err
    args = ["bench", "--dataset", "logdir", "--data", str(tiny_folder), "--dask", "local"]
    assert main([*args, "--set", "data.part_rows=100", "--out", out]) == 2
    assert "data.part_rows and --dask" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bench_in_parts_reuses_the_whole_logs_record(tmp_path, tiny_folder):
    """A log read in parts is the same data: its run reuses the whole log's record."""
    args = ["bench", "--dataset", "logdir", "--data", str(tiny_folder), "--models", "xgboost"]
    args += ["--seeds", "0", "--threads", "1", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    record = next((tmp_path / "logdir-tiny-log0").glob("runs/xgboost-seed0.json")).read_bytes()
    assert main([*args, "--set", "data.part_rows=300"]) == 0  # a new run would rewrite it
    assert next((tmp_path / "logdir-tiny-log0").glob("runs/xgboost-seed0.json")).read_bytes() == (
        record
    )


def test_the_large_config_runs_in_parts_on_the_tiny_preset(tmp_path):
    """`make bench-large`'s settings (benchmarks/configs/large.yaml): both models train and
    score on memory-mapped arrays through the driver, on the sample of the training rows."""
    root = Path(__file__).resolve().parents[2]
    recipe = re.search(r"^bench-large:.*\n((?:\t.*\n)+)", (root / "Makefile").read_text(), re.M)
    assert "--config benchmarks/configs/large.yaml" in recipe.group(1)
    args = ["bench", "--config", str(root / "benchmarks" / "configs" / "large.yaml")]
    args += ["--preset", "tiny", "--set", "data.part_rows=300", "--name", "large-on-tiny"]
    args += ["--set", "model_config.mmoe.max_epochs=2", "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path), "--wandb", "disabled"]) == 0
    folder = tmp_path / "large-on-tiny"
    for model in ("xgboost", "mmoe"):
        record = json.loads((folder / "runs" / f"{model}-seed0.json").read_text())
        assert 0.5 < record["metrics"]["true_relevance"]["ndcg@10"]["mean"] <= 1
    assert "models train on a sample" in (folder / "summary.md").read_text()
