"""When a finished run is reused, and what a results folder's summary shows: every valid record
in the folder, stale ones apart with their reason, whatever the last command ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from benchmarks import reuse
from benchmarks.cli import main
from benchmarks.config import load_spec
from benchmarks.records import RunStore
from benchmarks.reuse import stale_reasons
from benchmarks.runner import prepare_datamodule
from datamodules.threads import available_cores

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--set", "model_config.xgboost.n_estimators=20", "--set", "model_config.mmoe.max_epochs=2"]


def bench(out: Path, *args: str) -> int:
    return main(
        ["bench", "--preset", "tiny", "--out", str(out), "--wandb", "disabled", "--quiet"]
        + FAST
        + list(args)
    )


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """xgboost then mmoe, seed 0, run by two separate commands into one folder."""
    out = tmp_path_factory.mktemp("results")
    assert bench(out, "--models", "xgboost", "--seeds", "0") == 0
    assert bench(out, "--models", "mmoe", "--seeds", "0") == 0
    return out / "simulator-tiny"


def test_the_summary_holds_every_valid_record_of_the_folder(two_models):
    summary = (two_models / "summary.md").read_text()
    assert "| xgboost |" in summary and "| mmoe |" in summary
    assert "--models xgboost mmoe --seeds 0" in summary  # the command for the whole table
    assert "±" not in summary.split("\n\n")[2]  # one seed: no spread to show
    table = pl.read_csv(two_models / "summary.csv")
    assert table.filter(~pl.col("reference"))["model"].to_list() == ["xgboost", "mmoe"]


def test_a_one_model_run_reuses_its_record_and_leaves_the_folder_byte_identical(two_models, capsys):
    files = ("summary.md", "summary.csv", "ndcg.png", "dataset.json")
    before = {name: (two_models / name).read_bytes() for name in files}
    capsys.readouterr()
    assert bench(two_models.parent, "--models", "xgboost", "--seeds", "0") == 0
    assert "skip xgboost-seed0" in capsys.readouterr().out
    assert {name: (two_models / name).read_bytes() for name in files} == before


def test_a_stale_record_is_shown_apart_with_its_reason(two_models, tmp_path):
    out = tmp_path / "copy"
    (out / "simulator-tiny").mkdir(parents=True)
    for path in (two_models / "runs").iterdir():
        (out / "simulator-tiny" / "runs").mkdir(exist_ok=True)
        (out / "simulator-tiny" / "runs" / path.name).write_bytes(path.read_bytes())
    code = bench(out, "--models", "xgboost", "--seeds", "0", "--set", "model_config.mmoe.lr=0.01")
    assert code == 0
    summary = (out / "simulator-tiny" / "summary.md").read_text()
    table, stale = summary.split("Stale records", 1)
    assert "| mmoe |" not in table and "| xgboost |" in table
    row = next(line for line in table.splitlines() if line.startswith("| mmoe"))
    assert row.startswith("| mmoe (stale: config; seeds 0) |")
    assert "**" not in row and "*" not in row.replace("**", "")  # never best, never tested
    assert "| mmoe-seed0 | config |" in stale
    assert "--models xgboost --seeds 0" in table


@pytest.fixture(scope="module")
def prepared(two_models):
    config = load_spec(
        overrides={"preset": "tiny"}, assignments=["model_config.xgboost.n_estimators=20"]
    )
    datamodule = prepare_datamodule(config, progress=False, echo=lambda *_: None)
    record = json.loads((two_models / "runs" / "xgboost-seed0.json").read_text())
    return config, datamodule, record


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("split_hash", "0" * 16, "split"),
        ("dataset_fingerprint", "0" * 16, "data"),
        ("code_hash", "0" * 16, "code"),
        ("config_hash", "0" * 12, "config"),
        ("packages", {"torch": "0.0"}, "packages"),
    ],
)
def test_the_stale_check_reads_every_part_of_a_records_identity(prepared, field, value, reason):
    config, datamodule, record = prepared
    assert stale_reasons(record, datamodule, config, threads=1) == []
    assert stale_reasons({**record, field: value}, datamodule, config, threads=1) == [reason]


def test_a_changed_lock_makes_a_record_stale(prepared, monkeypatch):
    config, datamodule, record = prepared
    monkeypatch.setattr(reuse, "lock_hash", lambda: "another lock")
    assert stale_reasons(record, datamodule, config, threads=1) == ["lock"]


def test_only_thread_dependent_models_are_keyed_by_the_thread_count(
    prepared, two_models, monkeypatch
):
    from models.mmoe import MMoERanker

    config, datamodule, record = prepared
    made_at = record["environment"]["threads"]
    assert stale_reasons(record, datamodule, config, threads=made_at + 1) == []  # xgboost
    config = config.changed(model_config={**config.model_config, "mmoe": {"max_epochs": 2}})
    mmoe = json.loads((two_models / "runs" / "mmoe-seed0.json").read_text())
    assert stale_reasons(mmoe, datamodule, config, threads=made_at) == []
    assert stale_reasons(mmoe, datamodule, config, threads=made_at + 1) == [
        f"threads ({made_at}; now {made_at + 1})"
    ]
    monkeypatch.setattr(MMoERanker, "thread_independent", True)  # as XGBoost's records are
    assert stale_reasons(mmoe, datamodule, config, threads=made_at + 1) == []


def test_editing_one_table_of_a_log_folder_retrains(tmp_path, capsys):
    log = tmp_path / "log"
    assert main(["simulate", "--preset", "tiny", "--out", str(log)]) == 0
    args = ["bench", "--dataset", "logdir", "--data", str(log), "--models", "xgboost"]
    args += ["--seeds", "0", "--out", str(tmp_path / "out"), "--wandb", "disabled", "--quiet"]
    assert main(args + FAST) == 0
    assert main(args + FAST) == 0
    assert "skip xgboost-seed0" in capsys.readouterr().out
    # Same path, same settings, prices 1% higher in one table: the data is not the same.
    table = log / "products.parquet"
    products = pl.read_parquet(table)
    products.with_columns(pl.col("price") * 1.01).write_parquet(table)
    assert main(args + FAST) == 0
    out = capsys.readouterr().out
    assert "done xgboost-seed0" in out and "skip" not in out


@pytest.mark.parametrize("threads", ["0", "100000"])
def test_a_thread_count_out_of_range_is_a_one_line_error(tmp_path, capsys, threads):
    assert bench(tmp_path, "--threads", threads) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rankbench: error: threads must be from 1 to") and "\n" not in err
    assert not list(tmp_path.rglob("*.json"))


def test_two_processes_write_byte_identical_per_query_files(tmp_path):
    """Separate processes run at the same time, reading (or both filling) one embedding
    cache. A cold cache's vectors are the same bits in any process and on any x86-64
    processor: tests/datamodules/test_same_data_anywhere.py and test_reproduction.py."""
    procs = []
    for name in ("a", "b"):
        command = [sys.executable, "-m", "benchmarks.cli", "bench", "--preset", "tiny"]
        command += ["--models", "xgboost", "mmoe", "--seeds", "0", "--threads", "1", "--quiet"]
        command += ["--out", str(tmp_path / name), *FAST]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True))
    for proc in procs:
        assert proc.wait(timeout=600) == 0
    runs = [RunStore(tmp_path / name / "simulator-tiny" / "runs") for name in ("a", "b")]
    for run_id in ("xgboost-seed0", "mmoe-seed0"):
        assert (
            runs[0].queries_path(run_id).read_bytes() == runs[1].queries_path(run_id).read_bytes()
        )
        a, b = (json.loads(store.record_path(run_id).read_text()) for store in runs)
        assert a["metrics"] == b["metrics"] and a["dataset_fingerprint"] == b["dataset_fingerprint"]


def test_the_default_thread_count_is_the_cores_this_process_may_use():
    assert available_cores() == len(os.sched_getaffinity(0))


def test_the_same_files_in_another_folder_reuse_the_records(tmp_path, capsys):
    import shutil

    from benchmarks.cli import main
    from tests.datamodules.test_letor import write_letor

    first = write_letor(tmp_path / "here" / "fold")
    moved = tmp_path / "there" / "fold"
    shutil.copytree(first, moved)
    argv = ["bench", "--dataset", "letor", "--models", "xgboost", "--seeds", "0", "--name", "f"]
    argv += ["--out", str(tmp_path / "out"), "--wandb", "disabled", "--threads", "1"]
    argv += ["--set", "model_config.xgboost.n_estimators=10"]
    assert main([*argv, "--data", str(first)]) == 0
    capsys.readouterr()
    assert main([*argv, "--data", str(moved)]) == 0
    assert "skip xgboost-seed0: finished earlier" in capsys.readouterr().out


def test_xgboost_on_dask_is_a_run_of_its_own_and_the_other_models_share_their_records():
    from types import SimpleNamespace

    from benchmarks.reuse import run_settings
    from benchmarks.spec import RunSpec

    datamodule = SimpleNamespace(source=SimpleNamespace(describe=lambda: {"preset": "tiny"}))
    here, on_dask = RunSpec(), RunSpec(dask="local")
    for model, differs in (("xgboost", True), ("xgboost_unbiased", True), ("mmoe", False)):
        settings = run_settings(here, datamodule, model), run_settings(on_dask, datamodule, model)
        assert (settings[0] != settings[1]) is differs, model
