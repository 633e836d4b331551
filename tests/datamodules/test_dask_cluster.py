"""The log's counts on a 2-worker Dask cluster: the same labels and behaviour features as in
one process, and one line naming the stage when a worker is lost or the scheduler is out of
reach."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from datamodules import SearchLogDataModule
from datamodules import cluster as cluster_module
from datamodules import labels as labels_module
from datamodules.cluster import ClusterError, DaskCluster, partitions_by_request
from datamodules.labels import label_log
from datamodules.search_log import SPLITS, DataConfig
from datamodules.sources import SimulatorSource
from labeling.click_rates import add_pair_sums, weighted_pair_sums
from labeling.log_counts import add_counts, log_counts
from labeling.propensity_regression_em import (
    add_click_cells,
    add_vocabularies,
    click_cells,
    pair_vocabulary,
)
from tests.conftest import WITHOUT_TEXT, local_dask_cluster

BEHAVIOUR_FEATURES = ("qp_", "product_", "user_log_clicks", "_affinity", "user_relative_price")


def _local_cluster(processes: bool) -> DaskCluster:
    client, local = local_dask_cluster(processes)
    return DaskCluster(client, local.scheduler_address, local)


@pytest.fixture(scope="module")
def cluster():
    cluster = _local_cluster(processes=False)  # threads: starts at once, counts as well
    yield cluster
    cluster.close()


def _rows(preset: str, config: DataConfig, cluster: DaskCluster | None = None) -> pl.DataFrame:
    datamodule = SearchLogDataModule(SimulatorSource(preset), config, cluster=cluster)
    datamodule.setup()
    return pl.concat([datamodule.rows(split) for split in SPLITS])


@pytest.mark.parametrize(
    ("preset", "config"), [("tiny", DataConfig()), ("ci", WITHOUT_TEXT)], ids=["tiny", "ci"]
)
def test_labels_and_behaviour_features_are_those_of_one_process(cluster, preset, config):
    from distributed import get_task_stream

    alone = _rows(preset, config)
    with get_task_stream(cluster.client) as tasks:
        on_dask = _rows(preset, config, cluster)
    ran = {task["key"][0] if isinstance(task["key"], tuple) else task["key"] for task in tasks.data}
    assert any("visible_part" in key for key in ran) and any("fold_sums" in key for key in ran)

    behaviour = [c for c in alone.columns if any(part in c for part in BEHAVIOUR_FEATURES)]
    assert "qp_click_rate" in behaviour and "user_relative_price" in behaviour
    for column in ("relevance", *behaviour):
        assert on_dask[column].equals(alone[column]), column  # exactly, not approximately
    assert on_dask.equals(alone)


def test_the_counts_of_parts_add_up_to_the_whole_logs():
    log = SimulatorSource("tiny").load().impressions
    parts = partitions_by_request(log, 5)
    whole, added = log_counts(log), add_counts([log_counts(part) for part in parts])
    assert added.impressions == whole.impressions == log.height
    for table in ("positions", "interventions"):
        assert _sorted(getattr(added, table)).equals(_sorted(getattr(whole, table))), table
    keys = ("query", "product_id")
    vocabulary = add_vocabularies([pair_vocabulary(part, keys) for part in parts])
    assert all(a.equals(b) for a, b in zip(vocabulary, pair_vocabulary(log, keys), strict=True))
    cells = add_click_cells([click_cells(part, keys, vocabulary) for part in parts])
    assert _sorted(cells).equals(_sorted(click_cells(log, keys, vocabulary)))
    by_position = 1 / np.arange(1, 9) ** 0.7
    sums = add_pair_sums([weighted_pair_sums(part, by_position) for part in parts])
    assert _sorted(sums).equals(_sorted(weighted_pair_sums(log, by_position)))


def _sorted(table: pl.DataFrame) -> pl.DataFrame:
    return table.sort(table.columns)  # one row per key: any order of the parts, one table


@pytest.mark.parametrize("method", ["regression_em", "intervention"])
def test_a_whole_log_is_labelled_the_same_on_the_cluster(cluster, method):
    log = SimulatorSource("tiny").load().impressions
    labeling = dataclasses.replace(WITHOUT_TEXT.labels.labeling, propensity_method=method)
    config = dataclasses.replace(WITHOUT_TEXT.labels, labeling=labeling)
    on_dask, alone = label_log(log, None, config, cluster), label_log(log, None, config)
    assert on_dask.propensity.method == alone.propensity.method == method
    assert on_dask.propensity.curve.equals(alone.propensity.curve)
    assert on_dask.pairs.equals(alone.pairs)


def test_partitions_keep_every_request_whole():
    log = SimulatorSource("tiny").load().impressions
    parts = partitions_by_request(log, 4)
    assert sum(part.height for part in parts) == log.height
    owned = [set(part["request_id"].to_list()) for part in parts]  # no request in two parts
    assert sum(map(len, owned)) == len(set().union(*owned)) == log["request_id"].n_unique()


def _exit_worker(rows, count, visible):
    """A counting task whose worker dies under it."""
    os._exit(1)


def test_a_lost_worker_ends_the_labelling_in_one_line_and_a_rerun_resumes(monkeypatch):
    import dask
    import distributed  # noqa: F401 (its settings loaded before they are changed below)

    # No retries on another worker: the first death is the stage's failure.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = _local_cluster(processes=True)
    try:
        monkeypatch.setattr(labels_module, "visible_part", _exit_worker)
        with pytest.raises(ClusterError) as error:
            _rows("tiny", WITHOUT_TEXT, cluster)
        message = str(error.value)
        assert message.startswith("dask: labelling: worker lost (KilledWorker: ")
        assert message.endswith("; rerun to resume") and "\n" not in message
        monkeypatch.undo()
        cluster.client.restart()  # the nannies have started new workers: wait for them
        assert _rows("tiny", WITHOUT_TEXT, cluster).height == 1_600  # 200 requests of 8
    finally:
        cluster.close()


def test_an_unreachable_scheduler_is_refused_in_one_line_before_any_data_work(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 1.0)
    common = ["--preset", "tiny", "--models", "xgboost", "--out", str(tmp_path), "--quiet"]
    capsys.readouterr()
    assert main(["bench", *common, "--dask", "tcp://127.0.0.1:1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "rankbench: error: dask: cannot reach the scheduler at tcp://127.0.0.1:1"
    )
    assert "\n" not in error
    assert main(["bench", *common, "--dask", "tcp//127.0.0.1"]) == 2
    assert "dask must be 'local' or a scheduler address" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written: no data was touched
