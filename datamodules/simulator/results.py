"""What the generator hands out: the tables made once, the chunks, and their sources."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass
class SimulatedCatalog:
    """The tables generated once, before the impressions."""

    products: pl.DataFrame
    users: pl.DataFrame
    examination: pl.DataFrame


@dataclass
class SimulatedChunk:
    """Impressions and their truth for requests ``first_request_id`` onwards."""

    index: int
    first_request_id: int
    impressions: pl.DataFrame
    relevance: pl.DataFrame


SOURCES = {
    "products": "simulator:products",
    "users": "simulator:users",
    "impressions": "simulator:impressions",
    "truth": "simulator:truth",
}
