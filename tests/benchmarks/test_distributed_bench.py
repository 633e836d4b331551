"""`rankbench bench` on two CPU processes (DDP over gloo, Lightning's own launcher) against
one process: it completes, the first process alone writes, and the metrics agree within a
stated tolerance (two processes average their gradients over twice the groups a step, so
they train another model; on the tiny preset the headline NDCGs moved by at most 0.011)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from benchmarks.cli import main
from datamodules.threads import available_cores

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or available_cores() < 2, reason="needs two cores"
)
TOLERANCE = 0.03  # NDCG@10 of the true and the derived relevance, tiny preset (20 queries)


def _args(out, *extra: str) -> list[str]:
    args = ["bench", "--preset", "tiny", "--models", "mmoe", "--seeds", "0", "--threads", "1"]
    return [*args, "--out", str(out), "--wandb", "disabled", "--quiet", *extra]


def test_two_processes_complete_write_once_and_agree_with_one(tmp_path):
    assert main(_args(tmp_path / "one")) == 0  # one process: this one
    several = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    command = [sys.executable, "-m", "benchmarks.cli", *_args(tmp_path / "two", *several)]
    two = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("| mmoe |") == 1  # one table, from the first process
    runs = tmp_path / "two" / "simulator-tiny" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [
        "mmoe-seed0.json",
        "mmoe-seed0.queries.parquet",
    ]
    record = json.loads((runs / "mmoe-seed0.json").read_text())
    device = record["training"]["device"]
    assert (device["world_size"], device["strategy"]) == (2, "DDPStrategy")
    assert record["config"]["trainer"]["devices"] == 2
    single = json.loads((tmp_path / "one/simulator-tiny/runs/mmoe-seed0.json").read_text())
    assert single["training"]["device"]["world_size"] == 1
    for label in ("true_relevance", "relevance"):
        ndcg = record["metrics"][label]["ndcg@10"]["mean"]
        assert ndcg == pytest.approx(single["metrics"][label]["ndcg@10"]["mean"], abs=TOLERANCE)
