"""Several processes (DDP on the CPU, gloo) against one: query groups dealt whole, validation
NDCG summed over every process, predictions gathered into row order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from datamodules.threads import available_cores
from models import create_ranker
from models.devices import TrainerConfig
from models.validation_ndcg import grouped_ndcg

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or available_cores() < 2, reason="needs two cores"
)


def _validate_on_ranks(out: Path, processes: int) -> float:
    """The summed validation NDCG of ``processes`` fresh processes started by torchrun."""
    script = Path(__file__).with_name("validate_on_ranks.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={processes}", str(script), str(out), str(processes)]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return float(out.read_text())


def test_validation_ndcg_over_several_processes_is_the_one_process_value(datamodule, tmp_path):
    L.seed_everything(0, verbose=False)
    net = create_ranker("mmoe").build_module(datamodule)  # the weights every process builds
    trainer = L.Trainer(
        **TrainerConfig(accelerator="cpu", devices=1).trainer_kwargs(),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (results,) = trainer.validate(net, datamodule=datamodule, verbose=False)
    one = results["val_ndcg@10"]
    # Three processes hold 7, 7 and 6 of the 20 validation groups: a mean of the processes'
    # means would be off; their sums and counts add up to every group once (float32 scores
    # summed in another order: equal to 1e-6).
    assert datamodule.arrays("val").n_groups % 3 != 0
    three = _validate_on_ranks(tmp_path / "three.txt", 3)
    assert three == pytest.approx(one, abs=1e-6)
    # And the one-process value is the validation NDCG of the scores, computed directly.
    val = datamodule.arrays("val")
    net.eval()
    scores = np.zeros(val.n_rows)
    with torch.no_grad():
        for batch in datamodule.loader("val"):
            rows, heads = net.predict_step(batch, 0)
            scores[rows.numpy()] = heads["_score"].double().numpy()
    assert one == pytest.approx(grouped_ndcg(val.labels["relevance"], scores, val.group), abs=1e-6)


def test_each_process_scores_whole_groups_and_every_group_once(datamodule, monkeypatch):
    import torch.distributed as dist

    from datamodules import search_log

    groups = datamodule.arrays("val").n_groups
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda: 2)
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        loader = datamodule.loader("val")
        assert loader.sampler is not None
        shares.append(list(search_log._process_share(loader.dataset, shuffle=False)))
    assert sorted(shares[0] + shares[1]) == list(range(groups))  # no group twice, none lost
