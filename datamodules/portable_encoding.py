"""Text vectors that are the same bits on every x86-64 processor.

A matrix product's last bits depend on the instructions the math libraries pick for the
processor they run on (AVX-512, AVX2, SSE): all-MiniLM-L6-v2's vectors of the same text
differ by up to 1e-6 between an AVX-512 and an AVX2 machine, and through the similarity
feature so do the labels, the features and the dataset fingerprint that decides whether a
committed record is reused. So a CPU encode runs in a child process whose libraries are held
to one code path before they load: MKL's conditional numerical reproducibility
(``MKL_CBWR=COMPATIBLE``), PyTorch's baseline kernels (``ATEN_CPU_CAPABILITY=default``),
oneDNN switched off (it has no such mode) and one thread. The training process keeps the
fast code paths. On ARM, or on a GPU, vectors are the same on the same kind of device only.

Run as ``python -m datamodules.portable_encoding SETTINGS TEXTS OUT ERROR``: it encodes the
texts (a JSON list) with the encoder ``SETTINGS`` (a JSON ``EncoderConfig``), saves the
float32 vectors to ``OUT`` (``.npy``), or writes one line to ``ERROR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

PORTABLE_ENVIRONMENT = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "default",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
}

PARENT_ENV = "RANKBENCH_ENCODE_PARENT"


def portable_vectors(config, texts: list[str], progress: bool = False) -> np.ndarray:
    """float32 ``[len(texts), dim]`` from a child process on the portable code path;
    one-line ``ValueError`` with the child's last error line if it fails."""
    with tempfile.TemporaryDirectory(prefix="rankbench-encode-") as folder:
        files = [Path(folder) / n for n in ("config.json", "texts.json", "v.npy", "error.txt")]
        files[0].write_text(json.dumps(asdict(config)))
        files[1].write_text(json.dumps(texts))
        command = [sys.executable, "-m", "datamodules.portable_encoding", *map(str, files)]
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **PORTABLE_ENVIRONMENT, "PYTHONPATH": path}
        env["RANKBENCH_ENCODE_PROGRESS"] = "1" if progress else ""
        env[PARENT_ENV] = str(os.getpid())
        code = subprocess.run(command, env=env).returncode  # its progress bar shows live
        if code != 0:
            error = files[3].read_text().strip() if files[3].is_file() else ""
            raise ValueError(error or f"the text encoder's process ended with code {code}")
        return np.load(files[2])


def exit_when_orphaned(parent: int, poll_s: float = 1.0) -> None:
    """End this process when ``parent``, the process that started it, is gone: a killed
    benchmark must not leave its encoder running for minutes on a shared machine. The
    parent's pid comes from the parent, so a parent killed before this runs counts too."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-when-orphaned").start()


def _main(argv: list[str]) -> int:
    settings, inputs, out, error = map(Path, argv)
    exit_when_orphaned(int(os.environ.get(PARENT_ENV) or os.getppid()))
    try:
        import torch

        from datamodules.text_encoding import EncoderConfig, TextEncoder

        torch.backends.mkldnn.enabled = False  # oneDNN picks kernels by processor
        torch.set_num_threads(1)
        encoder = TextEncoder(EncoderConfig(**json.loads(settings.read_text())))
        texts = json.loads(inputs.read_text())
        progress = bool(os.environ.get("RANKBENCH_ENCODE_PROGRESS"))
        np.save(out, encoder.vectors(texts, progress=progress))
    except Exception as exc:  # noqa: BLE001 (one line for the parent to raise)
        error.write_text(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
