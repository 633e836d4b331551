"""Small-BERT text encoder with an on-disk embedding cache.

Used (a) to score the semantic similarity of query and product text for relevance labels
(:func:`pair_similarity`, handed to ``labeling/`` as a column) and (b) as the frozen text
tower of the multi-task ranker (:attr:`TextEncoder.model`, :attr:`TextEncoder.tokenizer`,
:func:`mean_pool`).

What it computes
----------------
A text is tokenized (truncated to ``EncoderConfig.max_length`` tokens, default 32: queries and
titles are short), run through a BERT-style ``transformers.AutoModel`` in eval mode under
``torch.inference_mode``, and its last hidden state is mean-pooled over the attention mask,
as sentence-transformers does for all-MiniLM-L6-v2. Vectors are float32 and are *not*
L2-normalized (:func:`cosine_similarity` normalizes). Each unique text is encoded once, per
call and across runs.

A text's vector is the same bits whatever else was encoded with it or before it, and whatever
the thread setting: each text runs through the model alone (no padding, no other rows) on one
thread (a batch's padding, its size and a multi-threaded matrix product each change the last
bits of a vector, and through it the similarity features, the labels and the dataset
fingerprint). On the CPU the model runs in a child process held to one code path of its
math libraries, so the bits are also the same on every x86-64 processor, AVX-512 or not
(``datamodules/portable_encoding.py``). Measured on 2 cores with all-MiniLM-L6-v2 (the cost
of both, against padded batches of 128 on the fast code path):
``benchmarks/scripts/bench_text_encoding.py``; the cache pays it once per machine.

Three rooms
-----------
* :mod:`datamodules.encoder_files`: which folder ``EncoderConfig.name`` means (the packaged
  all-MiniLM-L6-v2 by default, a hub id from the local Hugging Face cache, or a local
  folder; nothing is ever downloaded, and a missing encoder is one ``ValueError`` saying how
  to fix it), and the hashes of its config, tokenizer and weight files.
* :mod:`datamodules.embedding_cache`: the shards on disk and the in-memory index.
* this module: the config, the model (loaded only when some text is not cached, so a fully
  cached run never loads it), the encoding loop and the similarity helpers.

The cache folder of an encoder is ``<cache root>/<identity>/`` (the root:
``EncoderConfig.cache_dir``, else ``$RANKBENCH_CACHE``, else ``.rankbench_cache/embeddings``).
The **identity** (:attr:`TextEncoder.identity`, e.g. ``all-MiniLM-L6-v2-mean-len32-<hash>``)
hashes the cache format, the canonical name (the packaged name, the hub id or the folder's
absolute path), the pooling, the effective ``max_length``, the content of ``config.json`` and
of the tokenizer files, and the weight files: their size (packaged model: plus the package
version), their content-addressed blob name (hub cache) or size and mtime (local folder).
Changing the encoder, its weights, its tokenizer or ``max_length`` gives a new folder, so a
stale vector is never served. ``device`` is not part of it. A long encode writes a shard
every ``SHARD_ROWS`` texts, so a crash loses little.

Example::

    from datamodules.text_encoding import EncoderConfig, TextEncoder, pair_similarity

    encoder = TextEncoder(EncoderConfig())  # or EncoderConfig(name="huawei-noah/...")
    vectors = encoder.encode(["grey couch", "gray sofa"])  # float32 [2, 384]
    sims = pair_similarity(encoder, queries, titles)  # float32 [n], cosine
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.embedding_cache import EmbeddingCache, default_cache_dir, text_key
from datamodules.encoder_files import (
    PACKAGED_NAME,
    TOKENIZER_FILES,
    file_digest,
    fix_hint,
    read_json,
    resolve,
    resolve_encoder,
    slug,
    weight_files,
    weights_token,
)

__all__ = [
    "EncoderConfig",
    "TextEncoder",
    "cosine_similarity",
    "default_cache_dir",
    "mean_pool",
    "pair_similarity",
    "resolve_encoder",
    "text_key",
]

CACHE_FORMAT = 2  # 2: one text per forward pass, on one thread (bit-stable vectors)
POOLING = "mean"
SHARD_ROWS = 16_384  # a long encode writes a shard every this many new texts


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder, how texts are cut, and where vectors are cached."""

    name: str = PACKAGED_NAME  # packaged default; or a hub id, or a local folder
    max_length: int = 32  # tokens, [CLS] and [SEP] included; longer texts are truncated
    cache_dir: str | None = None  # None -> $RANKBENCH_CACHE or .rankbench_cache/embeddings
    device: str = "cpu"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"EncoderConfig.name must be a non-empty string, got {self.name!r}")
        if self.max_length < 2:
            raise ValueError(f"EncoderConfig.max_length must be >= 2, got {self.max_length}")


# --------------------------------------------------------------------------- vectors


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Mean of ``hidden`` [batch, tokens, dim] over tokens where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, in float64 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.square(x).sum(axis=-1, keepdims=True))
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products in float64, rounded to float32: the summation's last bits,
    which can depend on the processor's vector width, vanish in the rounding."""
    return np.clip((a * b).sum(axis=-1), -1.0, 1.0).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``a`` and ``b`` ([n, d] each, or broadcastable), float32 [n].

    A zero vector has similarity 0 with everything (never NaN); results are clipped to [-1, 1].
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape[-1:] != b.shape[-1:]:
        raise ValueError(f"cosine_similarity: last dimensions differ: {a.shape} vs {b.shape}")
    return _row_dots(*np.broadcast_arrays(_unit_rows(a), _unit_rows(b)))


def _as_texts(texts: Iterable[str]) -> list[str]:
    items = texts.to_list() if hasattr(texts, "to_list") else list(texts)
    bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if bad:
        raise TypeError(
            f"texts to encode must be strings; {len(bad)} of {len(items)} are not "
            f"(first at index {bad[0]}: {type(items[bad[0]]).__name__})"
        )
    return items


# --------------------------------------------------------------------------- encoder


class TextEncoder:
    """Encodes texts to float32 vectors with a BERT-style model, caching every vector on disk.

    ``stats`` counts, over this instance's life: ``texts_requested`` (inputs, duplicates
    included), ``unique_texts`` (distinct texts per call, summed), ``cache_hits`` (of those,
    served from the cache), ``texts_encoded`` (run through the model, one forward pass
    each), ``shards_written`` and ``shards_read``.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig()):  # noqa: B008 (frozen)
        self.config = config
        self.path, self.canonical_name, self._package_version = resolve(config.name)
        self._model_config = read_json(self.path / "config.json")
        max_positions = self._model_config.get("max_position_embeddings")
        self.max_length = (
            min(config.max_length, int(max_positions))
            if isinstance(max_positions, int) and max_positions >= 2
            else config.max_length
        )
        self._identity = self._compute_identity()
        root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        self.cache_root = root.expanduser().absolute()
        self.cache_path = self.cache_root / self._identity
        self.stats = dict.fromkeys(
            (
                "texts_requested",
                "unique_texts",
                "cache_hits",
                "texts_encoded",
                "shards_written",
                "shards_read",
            ),
            0,
        )
        self._model = None
        self._tokenizer = None
        # What users of this encoder compute from its model and share (MTL-TinyBERT's frozen
        # layer states): it lives as long as the encoder, and goes with it.
        self.derived: dict = {}
        self._cache = EmbeddingCache(self.cache_path, lambda: self.dim, self._meta, self.stats)

    def __repr__(self) -> str:
        return f"TextEncoder({self.config.name!r}, identity={self._identity!r})"

    # ---------------------------------------------------------------- identity and model

    def _compute_identity(self) -> str:
        packaged = self._package_version is not None
        tokenizer = {
            name: file_digest(self.path / name)
            for name in TOKENIZER_FILES
            if (self.path / name).is_file()
        }
        spec = {
            "format": CACHE_FORMAT,
            "name": self.canonical_name,
            "package_version": self._package_version,
            "pooling": POOLING,
            "max_length": self.max_length,
            "config": file_digest(self.path / "config.json"),
            "tokenizer": tokenizer,
            "weights": [weights_token(p, packaged) for p in weight_files(self.path)],
        }
        self._identity_spec = spec
        blob = json.dumps(spec, sort_keys=True).encode()
        digest = hashlib.blake2b(blob, digest_size=8).hexdigest()
        return f"{slug(self.canonical_name)}-{POOLING}-len{self.max_length}-{digest}"

    @property
    def identity(self) -> str:
        """The cache key of the encoder (its folder name under the cache root)."""
        return self._identity

    @property
    def dim(self) -> int:
        """Length of one vector (the model's hidden size)."""
        if self._model is not None:
            return int(self._model.config.hidden_size)
        for key in ("hidden_size", "dim", "d_model"):
            value = self._model_config.get(key)
            if isinstance(value, int) and value > 0:
                return value
        return int(self.model.config.hidden_size)

    def _load(self) -> None:
        import torch  # noqa: F401 (transformers needs it; imported here to keep import light)
        from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig
        from transformers.utils import logging as hf_logging

        name, path = self.config.name, str(self.path)
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            if "model_type" in self._model_config:
                model_config = AutoConfig.from_pretrained(path, local_files_only=True)
            else:  # e.g. TinyBERT's config.json: a BERT without a model_type
                model_config = BertConfig.from_pretrained(path, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(
                path, config=model_config, local_files_only=True
            )
            model = AutoModel.from_pretrained(path, config=model_config, local_files_only=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ValueError(
                f"text encoder EncoderConfig.name={name!r}: could not load it from {path} "
                f"({type(exc).__name__}: {first}); check that the folder holds a complete "
                f"BERT-style checkpoint, or {fix_hint(name)}"
            ) from None
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        model.eval()
        model.requires_grad_(False)
        self._tokenizer = tokenizer
        self._model = model.to(self.config.device)

    @property
    def model(self):
        """The ``transformers`` model (eval mode, frozen), loaded on first access."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self):
        """The tokenizer, loaded on first access."""
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    # ---------------------------------------------------------------- cache

    def _meta(self) -> dict:
        """What the cache folder's ``meta.json`` says the identity stands for."""
        return {
            "identity": self._identity,
            "setting": self.config.name,
            "loaded_from": str(self.path),
            "dim": self.dim,
            **self._identity_spec,
        }

    # ---------------------------------------------------------------- encoding

    def _run_model(self, texts: list[str], keys: list[bytes], progress: bool) -> None:
        """Encode ``texts`` into the cache, a shard at a time (a crash loses little). On the
        CPU the vectors come from a child process on the portable code path, so they are the
        same bits on every x86-64 processor (``datamodules/portable_encoding.py``)."""
        from datamodules import portable_encoding

        for start in range(0, len(texts), SHARD_ROWS):
            chunk = texts[start : start + SHARD_ROWS]
            if self.config.device == "cpu":  # the child reads the folder this one resolved
                local = replace(self.config, name=str(self.path))
                vectors = portable_encoding.portable_vectors(local, chunk, progress)
            else:
                vectors = self.vectors(chunk, progress)
            self._cache.add(keys[start : start + len(chunk)], vectors)
            self.stats["texts_encoded"] += len(chunk)

    def vectors(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """float32 ``[len(texts), dim]`` computed in this process, without the cache."""
        import torch
        from tqdm.auto import tqdm

        model, tokenizer = self.model, self.tokenizer
        accepted = set(tokenizer.model_input_names)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bar = tqdm(
            range(len(texts)),
            desc=f"encoding {len(texts):,} texts ({self.config.name})",
            unit="text",
            disable=not progress,
            mininterval=1.0,
        )
        # One text per forward pass on one thread: with no padding and no other rows in the
        # batch, and no thread-count-dependent split of the matrix products, a text's vector
        # is the same bits whatever else is encoded with it or before it, on any core count.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                for i in bar:
                    batch = tokenizer(
                        [texts[i]], truncation=True, max_length=self.max_length, return_tensors="pt"
                    )
                    inputs = {
                        k: v.to(self.config.device) for k, v in batch.items() if k in accepted
                    }
                    hidden = model(**inputs).last_hidden_state
                    out[i] = mean_pool(hidden, inputs["attention_mask"])[0].float().cpu().numpy()
        finally:
            torch.set_num_threads(threads)
        return out

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 [len(texts), dim], in input order; each unique text encoded at most once."""
        items = _as_texts(texts)
        self.stats["texts_requested"] += len(items)
        unique = dict.fromkeys(items)
        self.stats["unique_texts"] += len(unique)
        if not unique:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = {text: text_key(text) for text in unique}
        self._cache.refresh_for(keys.values())
        missing = [text for text, key in keys.items() if key not in self._cache]
        self.stats["cache_hits"] += len(unique) - len(missing)
        if missing:
            self._run_model(missing, [keys[t] for t in missing], progress)
        return self._cache.vectors([keys[t] for t in items])


def pair_similarity(
    encoder, left: Sequence[str], right: Sequence[str], progress: bool = False
) -> np.ndarray:
    """float32 [n]: cosine of ``encode(left[i])`` and ``encode(right[i])``.

    Each unique text across both sides is encoded once (``encoder`` needs only an
    ``encode(texts, progress=...)`` method); memory is bounded by the unique texts.
    """
    left, right = _as_texts(left), _as_texts(right)
    if len(left) != len(right):
        raise ValueError(
            f"pair_similarity: left and right differ in length ({len(left)} vs {len(right)})"
        )
    position: dict[str, int] = {}
    li = np.fromiter((position.setdefault(t, len(position)) for t in left), np.int64, len(left))
    ri = np.fromiter((position.setdefault(t, len(position)) for t in right), np.int64, len(right))
    if not position:
        return np.zeros(0, dtype=np.float32)
    unit = _unit_rows(encoder.encode(list(position), progress=progress))
    out = np.empty(len(left), dtype=np.float32)
    step = 65_536
    for start in range(0, len(left), step):
        end = start + step
        out[start:end] = _row_dots(unit[li[start:end]], unit[ri[start:end]])
    return out
