"""What the generator hands out: the tables made once, the chunks, and their sources."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datamodules.simulator.config import SimulatorConfig, examination_probabilities


class TrueExamination:
    """The true examination per position, as ``Truth.examination`` holds it.

    Under ``pbm`` it is the configuration's ``(1 / p) ** position_bias``. Under ``cascade``
    and ``dbn`` a row's examination depends on the items above it, so the table holds each
    position's mean over every request of the log, summed as the chunks are generated and
    readable once the last one has been.
    """

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self._sums = np.zeros(config.items_per_request, dtype=np.float64)
        self._requests = 0

    def add(self, examination: np.ndarray) -> None:
        """One chunk's ``[requests, positions]`` examination probabilities."""
        self._sums += examination.sum(axis=0)
        self._requests += len(examination)

    def table(self) -> pl.DataFrame:
        config = self.config
        k = config.items_per_request
        if config.click_model == "pbm":
            examination = examination_probabilities(config.position_bias, k)
        elif self._requests < config.n_requests:
            raise RuntimeError(
                f"the true examination under click_model {config.click_model} is the mean "
                "over the whole log: read it after the last chunk"
            )
        else:  # position 1 is always examined, so this is relative to it, as estimates are
            examination = self._sums / self._requests
        return pl.DataFrame(
            {"position": np.arange(1, k + 1, dtype=np.int32), "examination": examination}
        )


@dataclass
class SimulatedCatalog:
    """The tables generated once, before the impressions, and the true examination."""

    products: pl.DataFrame
    users: pl.DataFrame
    true_examination: TrueExamination

    @property
    def examination(self) -> pl.DataFrame:
        """``position``, ``examination``; under cascade and dbn once every chunk is made."""
        return self.true_examination.table()


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
