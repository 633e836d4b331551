"""`make bench-gpu`'s settings (benchmarks/configs/gpu.yaml): refused in one line where there
is no GPU, and, moved to the CPU on the tiny preset, every code path of the GPU sizes runs
but the CUDA kernels (the paper-size FT-Transformer, MTL-TinyBERT's whole encoder tuned on
three text fields under bf16 autocast)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from benchmarks.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "benchmarks" / "configs" / "gpu.yaml"


def test_make_bench_gpu_runs_the_gpu_config_and_a_tiny_run_on_one_gpu():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^bench-gpu:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    assert "--config benchmarks/configs/gpu.yaml" in recipe
    assert "--preset tiny" in recipe and "--accelerator gpu --devices 1" in recipe


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_without_a_gpu_the_gpu_config_is_one_line_before_any_data_work(tmp_path, capsys):
    args = ["bench", "--config", str(CONFIG), "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--wandb", "disabled"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rankbench: error: trainer.accelerator: gpu asked for, but torch")
    assert len(err.splitlines()) == 1 and not any(tmp_path.iterdir())


def test_the_gpu_sizes_run_on_the_cpu(tmp_path, tiny_bert):
    # MTL-TinyBERT's gpu profile holds the paper-size FT-Transformer as its tabular backbone
    # (the FT-Transformer's own paper size is built in tests/models/test_ft_transformer.py).
    args = ["bench", "--config", str(CONFIG), "--preset", "tiny", "--accelerator", "cpu"]
    args += ["--models", "mtl_tinybert", "--name", "gpu-sizes", "--out", str(tmp_path)]
    args += ["--wandb", "disabled", "--quiet"]
    args += ["--set", f"data.labels.encoder.name={tiny_bert}"]
    assert main([*args, "--set", "model_config.mtl_tinybert.max_epochs=1"]) == 0
    record = json.loads((tmp_path / "gpu-sizes" / "runs" / "mtl_tinybert-seed0.json").read_text())
    assert record["config"]["model_config"]["profile"] == "gpu"
    device = record["training"]["device"]
    assert device["accelerator"] == "cpu" and device["precision"] == "32-true"
    ndcg = record["metrics"]["true_relevance"]["ndcg@10"]["mean"]
    assert 0 < ndcg <= 1
