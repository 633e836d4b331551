"""A failing model does not end the benchmark; Ctrl-C ends it with the command's message;
a killed run's checkpoints do not stay behind."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from benchmarks.cli import main
from models import REGISTRY, Ranker, register
from models.mmoe import MMoENet

QUICK = ["--wandb", "disabled", "--quiet", "--set", "model_config.mmoe.max_epochs=1"]


class _Diverging(Ranker):
    """Scores every row NaN, as a model whose loss blew up would."""

    def fit(self, datamodule):
        pass

    def predict(self, datamodule, split):
        return np.full(datamodule.arrays(split).n_rows, np.nan)


@pytest.fixture
def diverging():
    register("test_diverging")(_Diverging)
    yield "test_diverging"
    REGISTRY.pop("test_diverging")


def bench(out, *models, extra=()):
    args = ["bench", "--preset", "tiny", "--models", *models, "--seeds", "0"]
    return main([*args, "--out", str(out), *QUICK, *extra])


def test_non_finite_scores_fail_one_run_and_the_others_go_on(tmp_path, capsys, diverging):
    assert bench(tmp_path, diverging, "xgboost") == 1
    captured = capsys.readouterr()
    assert "done xgboost-seed0" in captured.out
    err = captured.err.strip()
    assert err.startswith("rankbench: 1 run(s) failed: test_diverging-seed0 at evaluate:")
    assert "non-finite scores" in err and len(err.splitlines()) == 1
    folder = tmp_path / "simulator-tiny"
    failure = json.loads((folder / "runs" / "failed" / "test_diverging-seed0.json").read_text())
    assert failure["stage"] == "evaluate" and failure["model"] == "test_diverging"
    summary = (folder / "summary.md").read_text()
    assert "| test_diverging (failed; seeds 0) |" in summary and "| xgboost |" in summary


def test_ctrl_c_during_neural_training_exits_130_with_the_message(tmp_path, capsys, monkeypatch):
    def interrupted(self, batch, batch_index):
        raise KeyboardInterrupt

    monkeypatch.setattr(MMoENet, "training_step", interrupted)
    assert bench(tmp_path, "mmoe") == 130
    err = capsys.readouterr().err
    assert "rankbench: interrupted; finished runs are kept" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not list((tmp_path / "simulator-tiny" / "runs").glob("*.json"))


def test_checkpoints_live_in_scratch_and_a_killed_runs_are_removed(tmp_path, capsys):
    scratch = tmp_path / "simulator-tiny" / "scratch"
    left = scratch / "checkpoints-killed"
    left.mkdir(parents=True)
    (left / "epoch=3.ckpt").write_bytes(b"left by kill -9")
    assert bench(tmp_path, "mmoe") == 0
    assert not left.exists() and not list(scratch.rglob("*.ckpt"))
