"""A simulated log on disk: streamed to parquet parts with a manifest, and read back."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

from datamodules.atomic import atomic_path, atomic_write_json
from datamodules.simulator.api import simulate_chunks
from datamodules.simulator.config import SimulatorConfig
from datamodules.simulator.results import SOURCES
from datamodules.tables import SearchLog, Truth


def write_log(config: SimulatorConfig, out_dir: Path, progress: bool = True) -> dict:
    """Stream the log to parquet files in ``out_dir``; return a small summary.

    Layout: ``products.parquet``, ``users.parquet``, ``truth_examination.parquet``, and
    ``impressions/`` and ``truth_relevance/`` holding ``part-00000.parquet``
    ... one per chunk, then ``manifest.json`` (config and summary) last, so a directory with a
    manifest is complete. Every file is written under a temporary name and renamed into place.
    ``truth_examination.parquet`` follows the chunks: under cascade and dbn it is their mean.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    catalog, chunks = simulate_chunks(config, progress=progress)
    for name, table in (("products", catalog.products), ("users", catalog.users)):
        _write_parquet_atomic(table, out_dir / f"{name}.parquet")
    rows = 0
    for chunk in chunks:
        part = f"part-{chunk.index:05d}.parquet"
        _write_parquet_atomic(chunk.impressions, out_dir / "impressions" / part)
        _write_parquet_atomic(chunk.relevance, out_dir / "truth_relevance" / part)
        rows += chunk.impressions.height
    _write_parquet_atomic(catalog.examination, out_dir / "truth_examination.parquet")
    for folder in ("impressions", "truth_relevance"):
        _remove_stale_parts(out_dir / folder, config.n_chunks)
    seconds = time.perf_counter() - started
    summary = {
        "impressions": rows,
        "requests": config.n_requests,
        "products": catalog.products.height,
        "users": catalog.users.height,
        "chunks": config.n_chunks,
        "seconds": round(seconds, 3),
        "impressions_per_s": round(rows / seconds, 1) if seconds > 0 else float("inf"),
        "out_dir": str(out_dir),
    }
    atomic_write_json(
        out_dir / "manifest.json", {"config": asdict(config), "summary": summary}, indent=2
    )
    return summary


def read_log(out_dir: Path) -> SearchLog:
    """Read back a log written by :func:`write_log`."""
    out_dir = Path(out_dir)
    if not (out_dir / "manifest.json").exists():
        raise FileNotFoundError(f"{out_dir}: no manifest.json, not a complete simulated log")

    def parts(folder: str) -> pl.DataFrame:
        return pl.concat([pl.read_parquet(p) for p in sorted((out_dir / folder).glob("*.parquet"))])

    truth = Truth(
        relevance=parts("truth_relevance"),
        examination=pl.read_parquet(out_dir / "truth_examination.parquet"),
    )
    return SearchLog(
        pl.read_parquet(out_dir / "products.parquet"),
        parts("impressions"),
        pl.read_parquet(out_dir / "users.parquet"),
        truth,
        dict(SOURCES),
    )


def _write_parquet_atomic(table: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp, compression="lz4", statistics=False)


def _remove_stale_parts(folder: Path, n_parts: int) -> None:
    """Parts left by an earlier, longer run in the same folder would be read back."""
    for path in folder.glob("part-*.parquet"):
        if int(path.stem.split("-")[1]) >= n_parts:
            path.unlink()
