"""The data a model reads does not depend on what the embedding cache held before, on which
texts were encoded together, or on the thread count: the dataset fingerprint stays put."""

from __future__ import annotations

import torch

from datamodules import SearchLogDataModule
from datamodules.labels import LabelConfig
from datamodules.search_log import DataConfig
from datamodules.sources import SimulatorSource
from datamodules.text_encoding import EncoderConfig, TextEncoder


def _fingerprint(encoder: EncoderConfig) -> str:
    # A tiny random BERT (tests/conftest.py) stands in for MiniLM: the encoder's size is not
    # what is tested, and its vectors go into the labels and features all the same.
    config = DataConfig(labels=LabelConfig(encoder=encoder))
    datamodule = SearchLogDataModule(SimulatorSource("tiny"), config)
    datamodule.setup()
    return datamodule.fingerprint


def test_the_fingerprint_is_the_same_from_a_cold_cache_and_a_cache_warmed_otherwise(
    tmp_path, monkeypatch, tiny_bert
):
    encoder = EncoderConfig(name=str(tiny_bert))
    monkeypatch.setenv("RANKBENCH_CACHE", str(tmp_path / "cold"))
    cold = _fingerprint(encoder)

    # Another cache, warmed first by other texts mixed with some of the log's, in another
    # order, at another thread count.
    monkeypatch.setenv("RANKBENCH_CACHE", str(tmp_path / "warm"))
    log = SimulatorSource("tiny").load()
    titles = log.products["title"].to_list()
    others = [f"{word} gift set {i}" for i, word in enumerate(["red", "oak", "usb"] * 20)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        TextEncoder(encoder).encode(others + titles[::3][::-1])
        warm = _fingerprint(encoder)
    finally:
        torch.set_num_threads(threads)
    assert warm == cold
