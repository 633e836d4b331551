"""The public API: the whole log in memory, or the catalog once and the impressions in chunks."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from datamodules.simulator.config import SimulatorConfig
from datamodules.simulator.impressions import _iter_chunks
from datamodules.simulator.results import (
    SOURCES,
    SimulatedCatalog,
    SimulatedChunk,
    TrueExamination,
)
from datamodules.simulator.world import _build_world
from datamodules.tables import SearchLog, Truth


def simulate(config: SimulatorConfig, progress: bool = False) -> SearchLog:
    """The whole log in memory (the chunks concatenated)."""
    catalog, chunks = simulate_chunks(config, progress=progress)
    parts = list(chunks)
    truth = Truth(
        relevance=pl.concat([c.relevance for c in parts]),
        examination=catalog.examination,
    )
    impressions = pl.concat([c.impressions for c in parts])
    return SearchLog(catalog.products, impressions, catalog.users, truth, dict(SOURCES))


def simulate_chunks(
    config: SimulatorConfig, progress: bool = False
) -> tuple[SimulatedCatalog, Iterator[SimulatedChunk]]:
    """Products and users once, then impressions and truth chunk by chunk; the catalog's
    true examination is complete once the last chunk has been generated."""
    world = _build_world(config)
    examination = TrueExamination(config)
    catalog = SimulatedCatalog(world.products, world.users, examination)
    return catalog, _iter_chunks(world, config, progress, examination)
