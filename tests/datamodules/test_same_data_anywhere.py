"""The data a model reads does not depend on what the embedding cache held before, on which
texts were encoded together, or on the thread count: the dataset fingerprint stays put."""

from __future__ import annotations

import torch

from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource
from datamodules.text_encoding import EncoderConfig, TextEncoder


def _fingerprint() -> str:
    datamodule = SearchLogDataModule(SimulatorSource("tiny"))
    datamodule.setup()
    return datamodule.fingerprint


def test_the_fingerprint_is_the_same_from_a_cold_cache_and_a_cache_warmed_otherwise(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("RANKBENCH_CACHE", str(tmp_path / "cold"))
    cold = _fingerprint()

    # Another cache, warmed first by other texts mixed with some of the log's, in another
    # order, at another thread count.
    monkeypatch.setenv("RANKBENCH_CACHE", str(tmp_path / "warm"))
    log = SimulatorSource("tiny").load()
    titles = log.products["title"].to_list()
    others = [f"{word} gift set {i}" for i, word in enumerate(["red", "oak", "usb"] * 20)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        TextEncoder(EncoderConfig()).encode(others + titles[::3][::-1])
        warm = _fingerprint()
    finally:
        torch.set_num_threads(threads)
    assert warm == cold
