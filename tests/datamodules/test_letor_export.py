"""A simulated log written as a LETOR-format judged dataset and read back by the LETOR reader."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from datamodules.letor import read_letor
from datamodules.simulator import preset, simulate
from datamodules.simulator.letor_export import FEATURES, write_letor


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    log = simulate(preset("tiny"))
    folder = tmp_path_factory.mktemp("simletor")
    return log, folder, write_letor(log, folder, seed=0)


def test_it_reads_back_as_a_judged_dataset_with_unseen_test_queries(exported):
    log, folder, summary = exported
    judged = read_letor(folder).impressions
    assert judged.height == summary["pairs"]
    assert judged["request_id"].n_unique() == log.impressions["query"].n_unique()
    by_split = judged.group_by("dataset_split").agg(pl.col("request_id").unique())
    queries = {row[0]: set(row[1]) for row in by_split.iter_rows()}
    assert set(queries) == {"train", "val", "test"}
    assert not (queries["train"] & queries["test"]) and not (queries["val"] & queries["test"])
    assert len(queries["test"]) == round(0.2 * summary["queries"])


def test_judgments_are_the_rounded_mean_true_relevance_of_each_pair(exported):
    log, folder, _ = exported
    truth = log.impressions.join(log.truth.relevance, on=["request_id", "product_id"])
    expected = (
        truth.group_by("query", "product_id")
        .agg(pl.col("true_relevance").mean())
        .sort("query", "product_id")
    )
    # Files list each query's products by product id, queries by qid (sorted query text).
    lines = [
        line.split()[0]
        for name in ("train", "vali", "test")
        for line in open(folder / f"{name}.txt")
    ]
    qids = [
        int(line.split()[1][4:])
        for name in ("train", "vali", "test")
        for line in open(folder / f"{name}.txt")
    ]
    judged = pl.DataFrame({"qid": qids, "judgment": np.array(lines, dtype=float)})
    judged = judged.with_row_index().sort("qid", "index")  # back to (query, product) order
    assert np.array_equal(
        judged["judgment"].to_numpy(), np.round(expected["true_relevance"].to_numpy())
    )


def test_features_are_bounded_and_the_export_is_deterministic(exported, tmp_path):
    log, folder, summary = exported
    products = read_letor(folder).products
    assert [f"f{i}" for i in range(1, len(FEATURES) + 1)] == [
        c for c in products.columns if c.startswith("f")
    ]
    for share in ("f1", "f2", "f3", "f4", "f10", "f11"):  # cosines, shares and 0/1 flags
        assert products[share].min() >= 0 and products[share].max() <= 1 + 1e-9
    assert json.loads((folder / "features.json").read_text())["features"] == list(FEATURES)
    again = write_letor(log, tmp_path, seed=0)
    assert again == summary
    assert (tmp_path / "test.txt").read_bytes() == (folder / "test.txt").read_bytes()
    other = write_letor(log, tmp_path / "other", seed=1)
    assert (tmp_path / "other" / "test.txt").read_bytes() != (folder / "test.txt").read_bytes()
    assert other["pairs"] == summary["pairs"]


def test_a_log_without_truth_is_refused(exported, tmp_path):
    log, _, _ = exported
    with pytest.raises(ValueError, match="needs the simulator's truth"):
        write_letor(replace(log, truth=None), tmp_path)
