"""The packaged RetroTech benchmark settings, end to end on a small folder in RetroTech's format."""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "benchmarks" / "configs" / "retrotech.yaml"
QUERIES = ("ipad", "kindle", "lcd tv")
PRODUCTS_PER_QUERY = 12


def write_retrotech_folder(folder: Path, sessions_per_query: int = 60) -> Path:
    """products.csv.gz and sessions/<query>.csv.gz as RetroTech writes them: 0-based float
    ranks, UPCs without their leading zeros in the log, "True"/"False" clicks, and a
    backslash-escaped quote in the catalog."""
    rng = np.random.default_rng(0)
    (folder / "sessions").mkdir(parents=True)
    upcs = {
        q: [f"00{q_i}{p:09d}" for p in range(PRODUCTS_PER_QUERY)] for q_i, q in enumerate(QUERIES)
    }
    with gzip.open(folder / "products.csv.gz", "wt", newline="") as handle:
        writer = csv.writer(handle, escapechar="\\", doublequote=False, quoting=csv.QUOTE_ALL)
        writer.writerow(["upc", "name", "manufacturer", "short_description", "long_description"])
        for query, ids in upcs.items():
            for rank, upc in enumerate(ids):
                title = f'{query} model {rank} 10" screen' if rank % 2 else f"{query} case {rank}"
                writer.writerow([upc, title, "Acme" if rank % 3 else "", f"about {query}", ""])
    for query, ids in upcs.items():
        rows = ["sess_id,query,rank,clicked_doc_id,clicked"]
        for session in range(sessions_per_query):
            shown = rng.permutation(len(ids))
            for rank, index in enumerate(shown):
                # Better products (lower index) and higher ranks are clicked more often.
                p_click = 0.6 / (1 + rank) * (1 - index / len(ids))
                clicked = "True" if rng.random() < p_click else "False"
                rows.append(f"{session},{query},{rank}.0,{int(ids[index])},{clicked}")
        with gzip.open(folder / "sessions" / f"{query}.csv.gz", "wt") as handle:
            handle.write("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def retrotech_bench(tmp_path_factory, tiny_bert):
    data = write_retrotech_folder(tmp_path_factory.mktemp("retrotech"))
    out = tmp_path_factory.mktemp("results")
    code = main(
        [
            "bench",
            "--config",
            str(CONFIG),
            "--data",
            str(data),
            "--models",
            "xgboost",
            "mmoe",
            "mtl_tinybert",
            "--seeds",
            "0",
            # In this process: the config runs as many at a time as cores, and spawning
            # workers would only add their start-up to what this test checks.
            "--jobs",
            "1",
            "--out",
            str(out),
            "--wandb",
            "disabled",
            "--quiet",
            "--set",
            f"data.labels.encoder.name={tiny_bert}",
            "--set",
            "model_config.xgboost.n_estimators=20",
            "--set",
            "model_config.mmoe.max_epochs=1",
            "--set",
            "model_config.mtl_tinybert.max_epochs=1",
        ]
    )
    return code, out / "retrotech"


def test_retrotech_settings_run_every_model_that_fits_a_click_log(retrotech_bench):
    code, folder = retrotech_bench
    assert code == 0
    summary = (folder / "summary.md").read_text()
    assert "--config" in summary and "retrotech.yaml" in summary  # the command beside the table
    for model in ("xgboost", "mmoe", "mtl_tinybert"):
        assert f"| {model} |" in summary
    # A click log: relevance and click are scored; no true relevance, no cart, no purchase.
    header = next(line for line in summary.splitlines() if line.startswith("| model |"))
    assert "NDCG@10 rel" in header and "MRR click" in header
    assert "true" not in header and "cart" not in header and "buy" not in header
    assert "no add_to_cart" in summary and "no purchase" in summary
    # Sessions repeat a few queries: the test and the intervals resample query texts.
    assert "distinct test query texts (each the mean over its requests" in summary


def test_retrotech_settings_train_on_a_sample_and_test_on_whole_sessions(retrotech_bench):
    _, folder = retrotech_bench
    summary = (folder / "summary.md").read_text()
    kept = re.search(
        r"models train on a sample: ([\d,]+) of ([\d,]+) training impressions", summary
    )
    assert kept, summary
    sampled, whole = (int(n.replace(",", "")) for n in kept.groups())
    assert whole == 144 * PRODUCTS_PER_QUERY  # 80% of the 180 sessions train
    # About a fifth of the sessions, each with at most 9 unclicked impressions.
    assert 0 < sampled < 0.35 * whole
    per_query = pl.read_parquet(folder / "runs" / "xgboost-seed0.queries.parquet")
    assert per_query.height == 18  # 10% of the sessions are test sessions, every one scored
