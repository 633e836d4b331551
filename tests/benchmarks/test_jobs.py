"""`--jobs N`: several runs at a time, each in its own process, with the records and numbers
that one run at a time makes at the same thread count."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from benchmarks.cli import main
from benchmarks.records import RunStore
from benchmarks.run_pool import RunTask, longest_first
from benchmarks.spec import RunSpec
from datamodules.threads import available_cores

ARGS = ["bench", "--preset", "tiny", "--models", "xgboost", "mmoe", "--seeds", "1"]
ARGS += ["--threads", "1", "--wandb", "disabled", "--quiet"]
ARGS += ["--set", "model_config.xgboost.n_estimators=30", "--set", "model_config.mmoe.max_epochs=2"]


def _records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))}


@pytest.mark.skipif(available_cores() < 2, reason="two runs at a time need two cores")
def test_two_jobs_make_the_records_one_job_makes_and_reuse_them(tmp_path, capsys):
    assert main([*ARGS, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert "2 runs, 2 at a time, 1 thread(s) each" in capsys.readouterr().out
    assert main([*ARGS, "--out", str(tmp_path / "one")]) == 0
    two = _records(tmp_path / "two" / "simulator-tiny")
    one = _records(tmp_path / "one" / "simulator-tiny")
    assert set(two) == set(one) == {"xgboost-seed1", "mmoe-seed1"}
    for run_id, record in one.items():
        assert two[run_id]["metrics"] == record["metrics"], run_id
        assert two[run_id]["config_hash"] == record["config_hash"], run_id
        name = f"runs/{run_id}.queries.parquet"
        per_query = pl.read_parquet(tmp_path / "two" / "simulator-tiny" / name)
        assert per_query.equals(pl.read_parquet(tmp_path / "one" / "simulator-tiny" / name))

    capsys.readouterr()  # one job at a time reuses what two jobs made, and the other way round
    assert main([*ARGS, "--out", str(tmp_path / "two")]) == 0
    assert main([*ARGS, "--jobs", "2", "--out", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "done " not in out and out.count("skip ") == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--jobs", "0"], "jobs must be at least 1"),
        (["--jobs", "64"], "runs at a time with 1 thread(s) each"),
        (["--jobs", "2", "--devices", "2", "--strategy", "ddp"], "--jobs and several devices"),
        (["--jobs", "2", "--dask", "local"], "--jobs and --dask"),
    ],
)
def test_bad_jobs_are_one_line_before_any_data_work(tmp_path, capsys, extra, message):
    assert main([*ARGS, *extra, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_runs_start_longest_first_and_never_made_ones_before_all(tmp_path):
    store = RunStore(tmp_path / "runs")
    store.folder.mkdir(parents=True)
    for run_id, fit in (("a-seed0", 5.0), ("b-seed0", 50.0), ("c-seed0", 1.0)):
        record = {"run_id": run_id, "wall_time_s": {"fit": fit}}
        store.record_path(run_id).write_text(json.dumps(record))
    spec = RunSpec()

    def task(run_id: str) -> RunTask:
        return RunTask(run_id[0], 0, run_id, run_id, spec, {}, "", {}, {})

    tasks = [task(r) for r in ("a-seed0", "b-seed0", "new-seed0", "c-seed0")]
    assert [t.run_id for t in longest_first(tasks, store)] == [
        "new-seed0",
        "b-seed0",
        "a-seed0",
        "c-seed0",
    ]
