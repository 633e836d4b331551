"""Random streams, one per part of the simulation, and sampling from cumulative weights."""

from __future__ import annotations

import numpy as np

# Random streams: each part of the simulation draws from its own SeedSequence child, so
# changing one part (say the number of intents) does not reshuffle the others.
CATALOG_STREAM, USER_STREAM, INTENT_STREAM, WORDING_STREAM, CHUNK_STREAM = range(5)


def _stream_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def _sample_from_cdf(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)
