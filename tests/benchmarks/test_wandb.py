"""W&B as its users expect: curves that stream while a model trains, a group that holds every
model of the table once, one summary run per benchmark with the results as an artifact."""

from __future__ import annotations

import json
import re
import time

import pytest

from benchmarks.cli import main
from benchmarks.config import load_spec

ARGS = ["bench", "--preset", "tiny", "--seeds", "0", "--wandb", "offline", "--quiet"]
ARGS += ["--set", "model_config.mmoe.max_epochs=3", "--set", "model_config.xgboost.n_estimators=20"]


def bench(out, *models) -> int:
    return main([*ARGS, "--models", *models, "--out", str(out)])


def train_runs(folder) -> list[str]:
    return sorted(
        p.name for p in (folder / "wandb").glob("offline-run-*") if "summary" not in p.name
    )


def test_a_neural_model_streams_its_curves_while_it_trains(tmp_path, monkeypatch):
    import wandb

    calls: list[tuple[float, set]] = []
    log, finish = wandb.Run.log, wandb.Run.finish
    summaries: list[dict] = []

    def recording(self, data, *args, **kwargs):
        calls.append((time.time(), set(data)))
        return log(self, data, *args, **kwargs)

    def finishing(self, *args, **kwargs):
        summaries.append(dict(self.summary))
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", recording)
    monkeypatch.setattr(wandb.Run, "finish", finishing)
    assert bench(tmp_path, "mmoe") == 0
    trained = next(s for s in summaries if "device/strategy" in s)  # where it trained
    assert trained["device/accelerator"] == "cpu" and trained["device/world_size"] == 1
    assert trained["device/precision"] == "32-true" and trained["device/device_name"]
    steps = [(t, keys) for t, keys in calls if "train_loss" in keys]
    epochs = [(t, keys) for t, keys in calls if "val_ndcg@10" in keys]
    assert len(steps) >= 3 and len(epochs) >= 2  # per step and per epoch, not once at the end
    times = [t for t, _ in calls]
    assert times == sorted(times) and times[-1] - times[0] > 0
    assert len(train_runs(tmp_path / "simulator-tiny")) == 1


def test_the_group_holds_every_model_of_the_table_once(tmp_path):
    folder = tmp_path / "simulator-tiny"
    assert bench(tmp_path, "xgboost") == 0
    assert bench(tmp_path, "mmoe") == 0
    assert len(train_runs(folder)) == 2
    assert bench(tmp_path, "xgboost", "mmoe") == 0  # both reused: nothing logged again
    assert len(train_runs(folder)) == 2
    # A clone whose W&B folder is new logs each record of the table once, marked reused,
    # whichever models the command names.
    (folder / "wandb" / "logged-records.json").unlink()
    assert bench(tmp_path, "xgboost") == 0
    assert len(train_runs(folder)) == 4
    ledger = json.loads((folder / "wandb" / "logged-records.json").read_text())
    assert sorted(key.split(":")[0] for key in ledger) == ["mmoe-seed0", "xgboost-seed0"]
    summaries = {
        re.search(r"summary-([0-9a-f]{16})", p.name).group(1)
        for p in (folder / "wandb").glob("*-summary-*")
    }
    assert len(summaries) == 1  # one summary run id per benchmark, resumed


@pytest.mark.parametrize("mode", ["disabled"])
def test_disabled_writes_no_wandb_folder(tmp_path, mode):
    args = [a if a != "offline" else mode for a in ARGS]
    assert main([*args, "--models", "xgboost", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "simulator-tiny" / "wandb").exists()


def test_wandb_mode_in_the_environment_is_the_default_and_the_command_line_wins(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    without_flag = [a for a in ARGS if a not in ("--wandb", "offline")]
    assert main([*without_flag, "--models", "xgboost", "--out", str(tmp_path / "env")]) == 0
    assert not (tmp_path / "env" / "simulator-tiny" / "wandb").exists()
    assert load_spec(overrides={"wandb": {"mode": "offline"}}).wandb.mode == "offline"
    config = tmp_path / "online.yaml"
    config.write_text("wandb:\n  mode: online\n")
    assert load_spec(config).wandb.mode == "online"  # a user's file over the environment
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert main([*without_flag, "--models", "xgboost", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "rankbench: error: WANDB_MODE must be one of offline, online, disabled, not 'dryrun'"
    )
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("model", ["xgboost", "tabnet"])
def test_tree_and_tabnet_rankers_log_each_iteration(tmp_path, monkeypatch, model):
    import wandb

    points: list[set] = []
    log = wandb.Run.log

    def recording(self, data, *args, **kwargs):
        points.append(set(data))
        return log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", recording)
    extra = ["--set", "model_config.tabnet.max_epochs=3"]
    assert main([*ARGS, *extra, "--models", model, "--out", str(tmp_path)]) == 0
    curve = [p for p in points if "iteration" in p or "epoch" in p]
    assert len(curve) >= 3
    assert any("validation_0/ndcg@10-" in p or "val_ndcg@10" in p for p in curve)
