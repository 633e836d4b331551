"""The users: hidden preferences, the observable columns weakly tied to them, activity."""

from __future__ import annotations

import numpy as np
import polars as pl

from datamodules.simulator.config import SimulatorConfig
from datamodules.simulator.lexicon import _Vocabulary
from datamodules.simulator.streams import _cdf
from datamodules.simulator.vocabulary import AGE_BANDS, REGIONS


def _generate_users(config: SimulatorConfig, vocab: _Vocabulary, rng) -> dict:
    n, n_colors = config.n_users, len(vocab.colors)
    age = rng.choice(len(AGE_BANDS), n, p=[0.15, 0.3, 0.25, 0.18, 0.12])
    region = rng.integers(0, len(REGIONS), n)
    # Weak links between what is observable and what is hidden.
    price_level = 0.12 * (age - 2) + rng.normal(0.0, 0.35, n)
    sensitivity = rng.lognormal(0.0, 0.5, n) * np.where(age <= 1, 1.3, 1.0)
    region_favourite = rng.permutation(n_colors)[: len(REGIONS)]
    color = np.where(rng.random(n) < 0.3, region_favourite[region], rng.integers(0, n_colors, n))
    draw = rng.random((n, len(vocab.brands)))
    affinity = np.where(draw < 0.2, 1, np.where(draw > 0.82, -1, 0)).astype(np.int8)
    activity = rng.lognormal(0.0, 1.0, n)
    users = pl.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "age_band": pl.Series(AGE_BANDS).gather(age),
            "region": pl.Series(REGIONS).gather(region),
        }
    )
    return {
        "users": users,
        "user_affinity": affinity,
        "user_price_level": price_level.astype(np.float32),
        "user_price_sensitivity": sensitivity.astype(np.float32),
        "user_color": (color + 1).astype(np.int16),
        "user_cdf": _cdf(activity),
    }
