"""The world: the hidden state shared by all chunks, built once from the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datamodules.simulator.catalog import _generate_products
from datamodules.simulator.config import SimulatorConfig
from datamodules.simulator.intents import _generate_intents, _write_wordings
from datamodules.simulator.lexicon import _Vocabulary
from datamodules.simulator.streams import (
    CATALOG_STREAM,
    INTENT_STREAM,
    USER_STREAM,
    WORDING_STREAM,
    _stream_rng,
)
from datamodules.simulator.users import _generate_users


@dataclass
class _World:
    """Hidden state shared by all chunks: latent arrays indexed by row number."""

    products: pl.DataFrame
    users: pl.DataFrame
    # products
    product_category: np.ndarray  # int32
    product_brand: np.ndarray  # int32, global brand code
    product_attributes: np.ndarray  # (3, n) int16 colour, material, size codes + 1 (0: null)
    product_price_level: np.ndarray  # float32 log(price) - log(category median)
    product_rating: np.ndarray  # float32
    product_popularity: np.ndarray  # float32 z-score of log popularity
    category_products: np.ndarray  # int32 product rows sorted by category
    category_start: np.ndarray  # int64 offset of each category in category_products
    category_size: np.ndarray  # int64
    # users
    user_affinity: np.ndarray  # (n_users, n_brands) int8 in {-1, 0, 1}
    user_price_level: np.ndarray  # float32 preferred log price relative to category median
    user_price_sensitivity: np.ndarray  # float32 >= 0
    user_color: np.ndarray  # int16 colour code + 1
    user_cdf: np.ndarray  # float64 cumulative request share
    # intents
    intent_category: np.ndarray  # int32
    intent_values: np.ndarray  # (n, 3) int16 colour, material, size code + 1; 0: not named
    intent_brand: np.ndarray  # int32 global brand code, -1 for none
    intent_cdf: np.ndarray  # float64 cumulative (Zipf) popularity
    pool_products: np.ndarray  # int32 products matching each intent, concatenated
    pool_start: np.ndarray  # int64
    pool_size: np.ndarray  # int64
    wordings: pl.Series  # n_intents * wordings_per_intent query strings


def _build_world(config: SimulatorConfig) -> _World:
    vocab = _Vocabulary.build()
    catalog = _generate_products(config, vocab, _stream_rng(config.seed, CATALOG_STREAM))
    users = _generate_users(config, vocab, _stream_rng(config.seed, USER_STREAM))
    intents = _generate_intents(config, catalog, _stream_rng(config.seed, INTENT_STREAM))
    wordings = _write_wordings(config, vocab, intents, _stream_rng(config.seed, WORDING_STREAM))
    return _World(**catalog, **users, **intents, wordings=wordings)
