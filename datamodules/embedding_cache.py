"""The on-disk embedding cache of one encoder identity: a folder of ``.npz`` shards.

::

    <cache root>/<identity>/
      meta.json                       what the identity stands for (for people; not read)
      shard-<ns>-<pid>-<rand>.npz     keys uint8 [n, 16] + vectors float32 [n, dim]

A text's key is ``blake2b(text.encode("utf-8"), digest_size=16)``: the exact text, no
normalization. Shards are written to a hidden temporary file, fsynced and renamed into place,
so a crash leaves at most a stray ``.shard-*.tmp`` that readers ignore (and remove after an
hour). A shard that cannot be read is renamed ``*.corrupt`` and its texts are encoded again.
Several processes may share a cache: each writes its own shards. On first use every shard is
read once into an in-memory index; new shards (from other processes) are picked up when a
text is missing. More than ``MAX_SHARDS`` shards are merged into one on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from datamodules.atomic import atomic_path, atomic_write_text

CACHE_ENV = "RANKBENCH_CACHE"
DEFAULT_CACHE_DIR = ".rankbench_cache/embeddings"
KEY_BYTES = 16
MAX_SHARDS = 64  # more shards than this are merged into one when the cache is read
STALE_TEMP_SECONDS = 3600  # stray temp files older than this are removed


def default_cache_dir() -> Path:
    """Embedding cache root: ``$RANKBENCH_CACHE`` if set, else ``.rankbench_cache/embeddings``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def text_key(text: str) -> bytes:
    """The cache key of one text: 16-byte blake2b of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest()


class EmbeddingCache:
    """The vectors of one encoder identity, on disk and in an in-memory index.

    ``dim`` gives the vector length (called only when a shard is read or written, so a fully
    cached run never loads the model); ``meta`` gives what ``meta.json`` records; ``stats``
    is the encoder's counter dict (``shards_read``, ``shards_written``)."""

    def __init__(self, path: Path, dim: Callable[[], int], meta: Callable[[], dict], stats: dict):
        self.cache_path = path
        self._dim, self._meta, self.stats = dim, meta, stats
        self._index: dict[bytes, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._rows = 0
        self._seen_shards: set[str] = set()
        self._cache_read = False

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def refresh_for(self, keys: Iterable[bytes]) -> None:
        """Read the shards on first use, and again when a key is missing (another process
        may have written it)."""
        if not self._cache_read or any(k not in self._index for k in keys):
            self._refresh()

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Write ``vectors`` (one row per key) as a new shard and index them."""
        keys_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
        self._write_shard(keys_array, vectors)
        self._append(keys, vectors)

    def vectors(self, keys: Sequence[bytes]) -> np.ndarray:
        """float32 ``[len(keys), dim]``: the cached vector of every key, in order."""
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._matrix[rows]

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
                and vectors.shape[1] == self._dim()
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
        info = self._meta()
        atomic_write_text(meta, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.cache_path.mkdir(parents=True, exist_ok=True)
        self._write_meta()
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        with atomic_path(self.cache_path / name, fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=keys, vectors=np.ascontiguousarray(vectors, dtype=np.float32))
        self._seen_shards.add(name)
        self.stats["shards_written"] += 1
