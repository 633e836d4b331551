"""Speed of the text encoder and its embedding cache on the simulator's texts.

    .venv/bin/python benchmarks/scripts/bench_text_encoding.py
    .venv/bin/python benchmarks/scripts/bench_text_encoding.py --encoder HUB_ID_OR_FOLDER

Simulates a preset (``default``), takes its unique product titles and queries, and encodes
them with the encoder (the packaged all-MiniLM-L6-v2 unless ``--encoder``, e.g.
``huawei-noah/TinyBERT_General_4L_312D`` once it is in the local Hugging Face cache) into a
fresh temporary cache: cold (every text through the model; model load timed apart), then warm
(a new ``TextEncoder`` on the same cache: reads the shards, encodes nothing). Prints the
number of unique texts, texts/s cold, seconds warm and the cold/warm ratio, and the cost of
bit-stable vectors: the cold encode (one text per forward pass, one thread, in a child process
held to the math libraries' portable code path) against the same texts one per pass in this
process (this processor's fast code path) and the padding-dependent way (batches of 128
sorted by length, torch's default threads), with how many of those vectors differ in their
bits. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datamodules.simulator import preset, simulate  # noqa: E402
from datamodules.text_encoding import EncoderConfig, TextEncoder  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default", help="simulator preset")
    parser.add_argument("--encoder", default=EncoderConfig.name, help="EncoderConfig.name")
    parser.add_argument("--max-length", type=int, default=EncoderConfig.max_length)
    parser.add_argument("--batch-size", type=int, default=128, help="the batched comparison")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args(argv)

    log = simulate(preset(args.preset))
    titles = log.products["title"].unique().to_list()
    queries = log.impressions["query"].unique().to_list()
    texts = list(dict.fromkeys(titles + queries))

    with tempfile.TemporaryDirectory(prefix="rankbench-bench-emb-") as cache:
        config = EncoderConfig(
            name=args.encoder,
            max_length=args.max_length,
            cache_dir=cache,
        )
        cold = TextEncoder(config)
        started = time.perf_counter()
        _ = cold.model  # load the weights outside the timed encode
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        cold_vectors = cold.encode(texts, progress=args.progress)
        cold_s = time.perf_counter() - started

        warm = TextEncoder(config)
        started = time.perf_counter()
        warm_vectors = warm.encode(texts)
        warm_s = time.perf_counter() - started
        assert warm.stats["texts_encoded"] == 0, warm.stats
        assert np.array_equal(cold_vectors, warm_vectors)
        started = time.perf_counter()
        in_process = cold.vectors(texts)  # one text per pass, one thread, the fast code path
        in_process_s = time.perf_counter() - started
        started = time.perf_counter()
        batched = _batched(cold, texts, args.batch_size)
        batched_s = time.perf_counter() - started
        differ = int((batched != cold_vectors).any(axis=1).sum())
        shards = len(list(cold.cache_path.glob("shard-*.npz")))
        cache_mib = sum(p.stat().st_size for p in cold.cache_path.iterdir()) / 2**20

    print(
        f"{args.preset} preset: {len(texts):,} unique texts ({len(titles):,} titles, "
        f"{len(queries):,} queries); encoder {args.encoder} (dim {cold.dim}, max_length "
        f"{cold.max_length}; {torch.get_num_threads()} torch threads)"
    )
    print(f"  model load:  {load_s:.2f} s")
    print(
        f"  cold encode: {cold_s:.2f} s  ({len(texts) / cold_s:,.0f} texts/s, "
        f"one text per pass on one thread in the portable child process, its start and model "
        f"load included; {shards} shard(s), {cache_mib:.1f} MiB cached)"
    )
    print(
        f"  in-process:  {in_process_s:.2f} s  ({len(texts) / in_process_s:,.0f} texts/s, one "
        f"text per pass on one thread, this processor's fast code path); the portable path "
        f"costs {cold_s / in_process_s:.2f}x; "
        f"{int((in_process != cold_vectors).any(axis=1).sum()):,} vectors differ in their bits"
    )
    print(
        f"  warm encode: {warm_s:.3f} s  (new instance on the same cache: "
        f"{warm.stats['texts_encoded']} encoded, {warm.stats['cache_hits']:,} cache hits)"
    )
    print(f"  cold / warm: {cold_s / warm_s:,.0f}x")
    print(
        f"  batched by {args.batch_size} (padding-dependent): {batched_s:.2f} s "
        f"({len(texts) / batched_s:,.0f} texts/s); bit-stable costs {cold_s / batched_s:.1f}x; "
        f"{differ:,} of {len(texts):,} batched vectors differ in their bits"
    )


def _batched(encoder: TextEncoder, texts: list[str], size: int) -> np.ndarray:
    """The old way: length-sorted padded batches, all threads (for the comparison only)."""
    from datamodules.text_encoding import mean_pool

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), size):
            ids = order[start : start + size]
            batch = encoder.tokenizer(
                [texts[i] for i in ids],
                padding=True,
                truncation=True,
                max_length=encoder.max_length,
                return_tensors="pt",
            )
            hidden = encoder.model(**batch).last_hidden_state
            out[ids] = mean_pool(hidden, batch["attention_mask"]).numpy()
    return out


if __name__ == "__main__":
    main()
