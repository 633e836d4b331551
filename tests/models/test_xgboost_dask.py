"""XGBoost trained on a 2-worker Dask cluster: the quality of the single-process fit, and a
worker lost mid-training fails the run in one line, leaves nothing half-written, and a rerun
resumes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xgboost as xgb

from benchmarks.cli import main
from benchmarks.metrics import ndcg
from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource
from models import create_ranker
from models.xgboost_ranker import XGBoostRanker
from tests.conftest import WITHOUT_TEXT, local_dask_cluster

# Dask changes only where the histogram bins are cut (each worker sketches its own rows). In
# one process, cutting them coarser (max_bin 128 or 64 instead of 256) moves the ci preset's
# test NDCG@10 by 0.004-0.007; a Dask fit may differ by as much as such a binning change.
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def client():
    client, local = local_dask_cluster(processes=False)
    yield client
    client.close()
    local.close()


@pytest.fixture(scope="module")
def ci():
    datamodule = SearchLogDataModule(SimulatorSource("ci"), WITHOUT_TEXT)
    datamodule.setup()
    return datamodule


def _fitted(datamodule, model: str, dask_client=None):
    ranker = create_ranker(model, {}, seed=0)
    ranker.dask_client = dask_client
    ranker.fit(datamodule)
    return ranker


def _test_ndcg(datamodule, ranker, label: str) -> float:
    test = datamodule.arrays("test")
    scores = ranker.predict(datamodule, "test")
    assert np.isfinite(scores).all()
    return ndcg(test.labels[label], scores, test.group, k=10).mean


def test_xgboost_on_dask_scores_as_well_as_in_one_process(ci, client):
    alone, on_dask = _fitted(ci, "xgboost"), _fitted(ci, "xgboost", client)
    assert on_dask.training_summary["dask"] == {"workers": 2}
    assert "dask" not in alone.training_summary
    for label in ("true_relevance", "relevance"):
        difference = _test_ndcg(ci, on_dask, label) - _test_ndcg(ci, alone, label)
        assert abs(difference) <= TOLERANCE, (label, difference)


def test_the_unbiased_variant_trains_on_dask_too(ci, client):
    on_dask = _fitted(ci, "xgboost_unbiased", client)
    assert on_dask.training_summary["dask"] == {"workers": 2}
    assert _test_ndcg(ci, on_dask, "true_relevance") > 0.8  # a random order scores about 0.6


class _ExitAt(xgb.callback.TrainingCallback):
    """Ends the second worker's process at a boosting round: a worker lost mid-training."""

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        if epoch == 2 and xgb.collective.get_rank() == 1:
            os._exit(1)
        return False


def test_a_worker_lost_mid_training_fails_the_run_in_one_line_and_a_rerun_resumes(
    tmp_path, capsys, monkeypatch
):
    client, local = local_dask_cluster(processes=True)
    command = [
        "bench",
        "--preset",
        "tiny",
        "--models",
        "xgboost",
        "--seeds",
        "0",
        "--dask",
        local.scheduler_address,
        "--out",
        str(tmp_path),
        "--wandb",
        "disabled",
        "--quiet",
        "--set",
        "data.features.text_similarity=false",
        "--set",
        "data.labels.labeling.use_similarity=false",
    ]
    runs = tmp_path / "simulator-tiny" / "runs"
    try:
        # The callback travels with the model's settings, as a variant's options do.
        monkeypatch.setattr(XGBoostRanker, "objective_options", {"callbacks": [_ExitAt()]})
        capsys.readouterr()
        assert main(command) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("rankbench: 1 run(s) failed: xgboost-seed0 at fit: ClusterError: ")
        assert "dask: xgboost fit: worker lost (" in error and error.endswith("rerun to resume")
        assert not (runs / "xgboost-seed0.json").exists()  # no record, only the failure's
        failure = json.loads((runs / "failed" / "xgboost-seed0.json").read_text())
        assert failure["stage"] == "fit"

        monkeypatch.undo()
        client.restart()  # the nanny has started a new worker: wait for it
        assert main(command) == 0
        assert "done xgboost-seed0" in capsys.readouterr().out
        record = json.loads((runs / "xgboost-seed0.json").read_text())
        assert record["training"]["dask"] == {"workers": 2}
        assert not (runs / "failed" / "xgboost-seed0.json").exists()
    finally:
        client.close()
        local.close()
