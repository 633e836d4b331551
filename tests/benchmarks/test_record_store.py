"""The record machinery a resumed or reused benchmark rests on: all-or-nothing writes, the
JSON / per-query pairing, and the lock a record names."""

from __future__ import annotations

import json

import polars as pl
import pytest

from benchmarks import records
from benchmarks.records import RunStore

RUN = "xgboost-seed0"


def _record(value: float) -> dict:
    return {"run_id": RUN, "model": "xgboost", "seed": 0, "config_hash": "abc", "value": value}


def _queries(value: float) -> pl.DataFrame:
    return pl.DataFrame({"request_id": [1, 2, 3], "true_relevance/ndcg@10": [value] * 3})


@pytest.fixture
def store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "runs")
    store.write(_record(0.5), _queries(0.5))
    return store


def _leftovers(store: RunStore) -> list[str]:
    return sorted(p.name for p in store.folder.iterdir() if p.name.startswith("."))


def test_a_finished_run_is_found_with_its_config_only(store):
    assert store.finished(RUN, "abc")["value"] == 0.5
    assert store.finished(RUN, "other config") is None
    assert store.finished("mmoe-seed0", "abc") is None
    assert store.scan() == [(RUN, store.finished(RUN, "abc"), None)]


def test_a_rename_that_fails_leaves_the_old_record_whole_and_no_temporary_file(store, monkeypatch):
    before = store.record_path(RUN).read_bytes()
    from datamodules import atomic

    replace = atomic.os.replace

    def fail_on_the_record(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_on_the_record)
    with pytest.raises(OSError, match="disk full"):
        store.write(_record(0.9), _queries(0.9))
    monkeypatch.undo()
    assert store.record_path(RUN).read_bytes() == before
    assert _leftovers(store) == []
    # The per-query file was replaced before the record failed: the pair no longer matches,
    # so the run counts as unfinished and is trained again, never reused half-updated.
    assert store.finished(RUN, "abc") is None
    assert store.scan()[0][2] == "per-query file from another run"


def test_a_parquet_write_that_fails_part_way_leaves_the_old_run_whole(store, monkeypatch):
    before = store.queries_path(RUN).read_bytes()

    def half_written(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise OSError("killed")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_written)
    with pytest.raises(OSError, match="killed"):
        store.write(_record(0.9), _queries(0.9))
    monkeypatch.undo()
    assert store.queries_path(RUN).read_bytes() == before
    assert _leftovers(store) == []
    assert store.finished(RUN, "abc")["value"] == 0.5


def test_a_per_query_file_from_another_run_is_not_a_finished_run(store, tmp_path):
    other = RunStore(tmp_path / "other")
    other.write(_record(0.7), _queries(0.7))
    store.queries_path(RUN).write_bytes(other.queries_path(RUN).read_bytes())
    assert store.finished(RUN, "abc") is None
    assert store.scan()[0][2] == "per-query file from another run"
    store.queries_path(RUN).unlink()
    assert store.scan()[0][2] == "per-query file missing"
    store.record_path(RUN).write_text("{ half")
    assert store.scan()[0][1:] == (None, "unreadable record")


def test_records_name_the_lock_and_differences_from_it(tmp_path, monkeypatch, capsys):
    from importlib import metadata

    lock = tmp_path / "requirements.lock"
    polars_version = metadata.version("polars")
    lock.write_text(
        "# made by make lock\n"
        f"polars=={polars_version}\n    # via rankbench\nnumpy==0.0.1\nno-such-package==1.0\n"
    )
    monkeypatch.setattr(records, "LOCK_FILE", lock)
    records.lock_hash.cache_clear()
    records.lock_differences.cache_clear()
    try:
        env = records.environment(threads=2)
        numpy_version = metadata.version("numpy")
        assert env["lock_differences"] == [
            "no-such-package missing (lock 1.0)",
            f"numpy {numpy_version} (lock 0.0.1)",
        ]
        assert env["threads"] == 2 and len(env["lock"]) == 16
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "2 installed package(s) differ" in err[0] and "numpy" in err[0]
        records.environment(threads=2)
        assert capsys.readouterr().err == ""  # warned once per process
        lock.write_text(lock.read_text() + "extra==1\n")
        records.lock_hash.cache_clear()
        assert records.lock_hash() != env["lock"]
    finally:
        records.lock_hash.cache_clear()
        records.lock_differences.cache_clear()


def test_the_committed_lock_pins_every_dependency_exactly():
    import tomllib

    locked = records.locked_versions(records.LOCK_FILE.read_text())
    project = tomllib.loads((records.ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in wanted:
        bare = requirement.split(">")[0].split("=")[0].split("<")[0].split("[")[0]  # no extras
        name = records._normalised(bare)
        assert name in locked, f"{name} is not in requirements.lock (run make lock)"
    assert locked["torch"].startswith("2.13.0")


def test_a_record_written_by_the_store_is_plain_json(store):
    record = json.loads(store.record_path(RUN).read_text())
    assert record["per_query_sha256"] == records._file_sha256(store.queries_path(RUN))
