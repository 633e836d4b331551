"""The text tower's cache speed-up: training steps with cached frozen-layer outputs against
running the whole encoder for every batch, on the same batches, in one run.

Both variants train the same top layers on the same unique texts of each training batch of a
preset (query and title, the cpu profile's fields); the uncached one tokenizes the texts and
runs the embedding layer and the frozen lower layers (without gradient) every time. Prints
texts/s of each and their ratio, then the cached variant again under bfloat16 autocast (the
cpu profile's ``text_precision``).

    .venv/bin/python benchmarks/scripts/bench_text_tower.py --preset default --batches 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from datamodules import SearchLogDataModule
from datamodules.sources import SimulatorSource
from datamodules.text_encoding import EncoderConfig, TextEncoder, mean_pool
from models.mtl_tinybert import tuned_text_ids
from models.text_tower import TextTower, encoder_layers, run_layers

FIELDS = ["query", "title"]


def batch_texts(datamodule, n_batches: int) -> list[torch.Tensor]:
    """Unique query and title ids of the first ``n_batches`` training batches."""
    columns = [datamodule.spec.text_fields.index(f) for f in FIELDS]
    out = []
    for i, batch in enumerate(datamodule.loader("train", shuffle=False)):
        if i == n_batches:
            break
        ids = batch.text_ids[batch.mask][:, columns]
        out.append(torch.unique(ids[ids >= 0]))
    return out


def cached_step(tower: TextTower, ids: torch.Tensor) -> None:
    tower(ids).sum().backward()


def uncached_step(encoder: TextEncoder, tuned, texts: list[str], n_lower: int) -> None:
    """The whole encoder: tokenize, embed and run the frozen layers, then the tuned ones."""
    model, tokenizer = encoder.model, encoder.tokenizer
    inputs = tokenizer(
        texts, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model.embeddings(
            input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids")
        )
        hidden = run_layers(
            encoder_layers(model)[:n_lower], model.config, hidden, inputs["attention_mask"]
        )
    hidden = run_layers(tuned, model.config, hidden, inputs["attention_mask"])
    mean_pool(hidden, inputs["attention_mask"]).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--layers", type=int, default=1, help="fine-tuned top layers")
    args = parser.parse_args()

    datamodule = SearchLogDataModule(SimulatorSource(args.preset))
    datamodule.setup()
    texts = datamodule.texts
    started = time.perf_counter()
    tower = TextTower(
        texts, tuned_text_ids(datamodule, FIELDS), TextEncoder(EncoderConfig()), args.layers
    )
    build = time.perf_counter() - started
    encoder = TextEncoder(EncoderConfig())
    n_lower = len(encoder_layers(encoder.model)) - args.layers
    batches = batch_texts(datamodule, args.batches)
    n_texts = int(sum(len(ids) for ids in batches))

    started = time.perf_counter()
    for ids in batches:
        cached_step(tower, ids)
    cached = time.perf_counter() - started
    started = time.perf_counter()
    for ids in batches:
        uncached_step(encoder, tower.tuned, [texts[i] for i in ids.tolist()], n_lower)
    uncached = time.perf_counter() - started
    tower.precision = "bf16"  # the cpu profile's setting: the tuned layers under autocast
    started = time.perf_counter()
    for ids in batches:
        cached_step(tower, ids)
    cached_bf16 = time.perf_counter() - started

    print(
        f"preset {args.preset}: {len(texts):,} texts, {args.layers} of "
        f"{n_lower + args.layers} layers fine-tuned, {torch.get_num_threads()} threads"
    )
    print(f"cache build (frozen layers once per unique text): {build:.1f} s")
    print(
        f"{args.batches} training batches, {n_texts:,} unique texts (mean "
        f"{n_texts / len(batches):.0f} per batch), forward + backward:"
    )
    print(f"  cached frozen layers : {n_texts / cached:8.0f} texts/s")
    print(f"  whole encoder        : {n_texts / uncached:8.0f} texts/s")
    print(f"  speed-up             : {uncached / cached:8.2f}x")
    print(
        f"  cached, bf16 autocast: {n_texts / cached_bf16:8.0f} texts/s "
        f"({cached / cached_bf16:.2f}x float32 cached, {uncached / cached_bf16:.2f}x whole encoder)"
    )
    epoch = int(np.ceil(datamodule.arrays("train").n_groups / datamodule.config.batch_size))
    pays_off = build / max(uncached - cached, 1e-9) * len(batches)
    print(f"  cache build pays off after {pays_off:.0f} batches (one epoch: {epoch})")


if __name__ == "__main__":
    main()
