"""The numbers a reader trusts, recomputed independently: the summary's mean and spread over
seeds from the run records, and the logged-order reference from the test split itself."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from benchmarks.config import load_spec
from benchmarks.runner import prepare_datamodule
from benchmarks.summary import processors_line, record_processor


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    argv = ["bench", "--preset", "tiny", "--models", "mmoe", "--seeds", "0", "1"]
    argv += ["--out", str(out), "--wandb", "disabled", "--quiet"]
    assert main([*argv, "--set", "model_config.mmoe.max_epochs=2"]) == 0
    return out / "simulator-tiny"


def test_mean_and_std_over_seeds_are_the_records(two_seeds):
    table = pl.read_csv(two_seeds / "summary.csv")
    row = table.filter(pl.col("model") == "mmoe").row(0, named=True)
    records = [json.loads((two_seeds / "runs" / f"mmoe-seed{s}.json").read_text()) for s in (0, 1)]
    for label, metric in (("true_relevance", "ndcg@10"), ("click", "mrr")):
        values = [r["metrics"][label][metric]["mean"] for r in records]
        assert values[0] != values[1]  # the seeds differ, so the spread means something
        assert row[f"{label}/{metric}:mean"] == pytest.approx(np.mean(values), abs=1e-12)
        # the sample standard deviation (n - 1), as "mean ± std over seeds" promises
        assert row[f"{label}/{metric}:std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)


def test_the_logged_order_row_replays_the_positions(two_seeds):
    datamodule = prepare_datamodule(load_spec(overrides={"preset": "tiny"}), False, print)
    test = datamodule.arrays("test")
    truth, position, group = test.labels["true_relevance"], test.position, test.group
    per_query = []
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        shown = truth[rows][np.argsort(position[rows])][:10]  # position 1 first
        ideal = np.sort(truth[rows])[::-1][:10]
        discount = [1 / math.log2(rank + 2) for rank in range(len(shown))]
        dcg = sum((2**rel - 1) * d for rel, d in zip(shown, discount, strict=True))
        best = sum((2**rel - 1) * d for rel, d in zip(ideal, discount, strict=True))
        if best > 0:
            per_query.append(dcg / best)
    table = pl.read_csv(two_seeds / "summary.csv")
    logged = table.filter(pl.col("model") == "ref: logged order")
    assert logged["true_relevance/ndcg@10:mean"].item() == pytest.approx(np.mean(per_query))


def test_the_processors_line_counts_runs_per_named_processor():
    amd, intel = "AuthenticAMD AMD EPYC", "GenuineIntel Intel(R) Xeon(R)"
    unnamed = {"environment": {"processor": "x86_64 AVX512"}}  # made before records named it
    assert record_processor(unnamed) is None and record_processor({}) is None
    assert record_processor({"environment": {"cpu": amd}}) == amd
    assert processors_line([None, None]) is None  # nothing named: nothing said
    assert processors_line([amd]) == f"Processors the runs trained on: {amd} (1 run)."
    assert processors_line([intel, amd, None, amd]) == (
        f"Processors the runs trained on: {amd} (2 runs); {intel} (1 run); "
        "not named (1 run, made before records named the processor)."
    )
