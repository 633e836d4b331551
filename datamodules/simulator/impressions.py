"""Impressions, chunk by chunk: candidates, true relevance, the logging ranker's order,
result randomization, clicks under the click model and the purchase funnel, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from datamodules.click_models import simulate_clicks
from datamodules.simulator.config import (
    MAX_RELEVANCE,
    SimulatorConfig,
    attraction_probabilities,
    examination_probabilities,
)
from datamodules.simulator.results import SimulatedChunk, TrueExamination
from datamodules.simulator.streams import CHUNK_STREAM, _sample_from_cdf, _stream_rng
from datamodules.simulator.world import _World


def _iter_chunks(
    world: _World, config: SimulatorConfig, progress: bool, examination: TrueExamination
):
    """The chunks in order; each one's examination probabilities go into ``examination``."""
    bar = tqdm(total=config.n_chunks, disable=not progress, desc="simulating", unit="chunk")
    try:
        for index in range(config.n_chunks):
            first = index * config.chunk_requests
            n = min(config.chunk_requests, config.n_requests - first)
            yield _generate_chunk(world, config, index, first, n, examination)
            bar.update(1)
    finally:
        bar.close()


def _generate_chunk(
    world: _World,
    config: SimulatorConfig,
    index: int,
    first: int,
    n: int,
    examination: TrueExamination,
) -> SimulatedChunk:
    """Requests ``first`` .. ``first + n - 1`` (0-based), fully vectorized."""
    rng = _stream_rng(config.seed, CHUNK_STREAM, index)
    k = config.items_per_request
    user = _sample_from_cdf(rng, world.user_cdf, n)
    intent = _sample_from_cdf(rng, world.intent_cdf, n)
    wording = intent * config.wordings_per_intent + rng.integers(0, config.wordings_per_intent, n)

    candidates = _retrieve_candidates(rng, world, config, intent)
    relevance = _true_relevance(world, user, intent, candidates)
    order = _logging_order(rng, world, config, candidates, relevance)
    shown = np.take_along_axis(candidates, order, axis=1)
    shown_relevance = np.take_along_axis(relevance, order, axis=1)
    randomized, permutation = _randomize(rng, config, n)
    shown[randomized] = np.take_along_axis(shown[randomized], permutation, axis=1)
    shown_relevance[randomized] = np.take_along_axis(
        shown_relevance[randomized], permutation, axis=1
    )
    ranker_position = np.tile(np.arange(1, k + 1, dtype=np.int32), (n, 1))
    ranker_position[randomized] = permutation + 1
    randomized_flag = np.zeros(n, dtype=np.int8)
    randomized_flag[randomized] = 1
    click, cart, purchase, seen = _behaviour(rng, world, config, user, shown, shown_relevance)
    examination.add(seen)

    request_id = np.arange(first + 1, first + n + 1, dtype=np.int64)
    row_request = np.repeat(request_id, k)
    row_product = shown.ravel().astype(np.int64) + 1
    impressions = pl.DataFrame(
        {
            "request_id": row_request,
            "timestamp": pl.Series(np.repeat(_timestamps(rng, config, first, n), k)).cast(
                pl.Datetime("ms")
            ),
            "user_id": np.repeat(user.astype(np.int64) + 1, k),
            "query": world.wordings.gather(np.repeat(wording, k)),
            "product_id": row_product,
            "position": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "click": click.ravel(),
            "add_to_cart": cart.ravel(),
            "purchase": purchase.ravel(),
            "randomized": np.repeat(randomized_flag, k),
            "ranker_position": ranker_position.ravel(),
        }
    )
    truth = pl.DataFrame(
        {
            "request_id": row_request,
            "product_id": row_product,
            "true_relevance": shown_relevance.ravel(),
        }
    )
    return SimulatedChunk(index, first + 1, impressions, truth)


def _retrieve_candidates(rng, world: _World, config: SimulatorConfig, intent) -> np.ndarray:
    """(n, C) distinct product rows per request: intent matches, category, anywhere."""
    n, c = len(intent), config.n_candidates
    n_match = round(config.intent_match_share * c)
    n_other = round(config.off_category_share * c)
    n_category = c - n_match - n_other
    category = world.intent_category[intent]
    match = _draw_from_ranges(rng, world.pool_start[intent], world.pool_size[intent], n_match)
    same = _draw_from_ranges(
        rng, world.category_start[category], world.category_size[category], n_category
    )
    candidates = np.concatenate(
        [
            world.pool_products[match],
            world.category_products[same],
            rng.integers(0, config.n_products, (n, n_other), dtype=np.int32),
        ],
        axis=1,
    )
    return _make_distinct(rng, candidates, config.n_products)


def _draw_from_ranges(rng, start: np.ndarray, size: np.ndarray, per_row: int) -> np.ndarray:
    """(n, per_row) uniform indices into [start, start + size) for each row."""
    u = rng.random((len(start), per_row), dtype=np.float32)
    offset = (u * size[:, None].astype(np.float32)).astype(np.int64)
    return start[:, None] + np.minimum(offset, size[:, None] - 1)


def _make_distinct(rng, candidates: np.ndarray, n_products: int) -> np.ndarray:
    """Sort each row and redraw repeated products from the whole catalog until none repeat.

    Rows only come back while they still hold a repeat, so the loop shrinks fast; it is a
    loop over redraw rounds, vectorized over rows.
    """
    candidates.sort(axis=1)
    rows = np.arange(len(candidates))
    while rows.size:
        block = candidates[rows]
        repeated = np.zeros(block.shape, dtype=bool)
        repeated[:, 1:] = block[:, 1:] == block[:, :-1]
        has_repeat = repeated.any(axis=1)
        rows, block, repeated = rows[has_repeat], block[has_repeat], repeated[has_repeat]
        if not rows.size:
            break
        block[repeated] = rng.integers(0, n_products, int(repeated.sum()), dtype=np.int32)
        block.sort(axis=1)
        candidates[rows] = block
    return candidates


def _true_relevance(world: _World, user, intent, candidates: np.ndarray) -> np.ndarray:
    """The documented relevance rule (package docstring, step 4), int8 0..4."""
    n_brands = world.user_affinity.shape[1]
    brand = world.product_brand[candidates]
    on_category = world.product_category[candidates] == world.intent_category[intent][:, None]
    # Attribute match: the product has every attribute value the query names (at least one).
    asked = world.intent_values[intent]  # (n, 3), 0 where not named
    attribute_match = (asked > 0).any(axis=1)[:, None]
    for column in range(3):
        value = asked[:, column][:, None]
        product_value = world.product_attributes[column][candidates]
        attribute_match = attribute_match & ((value == 0) | (product_value == value))
    asked_brand = world.intent_brand[intent][:, None]
    brand_match = brand == asked_brand  # asked_brand is -1 when no brand was asked

    # Preference fit in half points: 2 * affinity + price fit (+-1) + colour (+1).
    affinity = world.user_affinity.ravel()[user[:, None].astype(np.int64) * n_brands + brand]
    gap = world.product_price_level[candidates] - world.user_price_level[user][:, None]
    price_fit = (np.abs(gap) <= 0.4).view(np.int8) - (gap > 0.4).view(np.int8)
    color_fit = world.product_attributes[0][candidates] == world.user_color[user][:, None]
    fit = 2 * affinity + price_fit + color_fit.view(np.int8)
    preference = (fit >= 2).view(np.int8) - (fit <= -1).view(np.int8)

    score = 1 + attribute_match.view(np.int8) + brand_match.view(np.int8) + preference
    return np.clip(score, 0, MAX_RELEVANCE) * on_category.view(np.int8)


def _logging_order(rng, world: _World, config: SimulatorConfig, candidates, relevance):
    """(n, K) candidate columns in the logging ranker's order, best first.

    Sorting packed int32 keys (quantized score, column) is several times faster than argsort.
    """
    n, c = candidates.shape
    noise = rng.standard_normal((n, c), dtype=np.float32)
    score = relevance.astype(np.float32) + np.float32(config.logging_noise) * noise
    score += np.float32(config.popularity_weight) * world.product_popularity[candidates]
    # Map the score to 25 bits (resolution 1e-6 over [-16, 16]), descending, then the column.
    quantized = np.clip((16.0 - score) * 2**20, 0, 2**25 - 1).astype(np.int32)
    key = (quantized << 6) | np.arange(c, dtype=np.int32)
    key.sort(axis=1)
    return key[:, : config.items_per_request] & 63


def _randomize(rng, config: SimulatorConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Which requests are randomized, and for each the column shown at each position.

    Only the top ``depth`` positions move; at the full depth (the default) this is the
    whole-list randomization, with the same draws.
    """
    k, depth = config.items_per_request, config.randomized_positions
    randomized = np.flatnonzero(rng.random(n) < config.intervention_rate)
    m = len(randomized)
    permutation = np.tile(np.arange(k), (m, 1))
    if config.intervention == "rand_top":
        permutation[:, :depth] = np.argsort(rng.random((m, depth)), axis=1)
    else:  # rand_pair: swap position 1 with a uniform position in 2..depth
        partner = rng.integers(1, depth, m)
        permutation[:, 0] = partner
        permutation[np.arange(m), partner] = 0
    return randomized, permutation


def _behaviour(rng, world: _World, config: SimulatorConfig, user, shown, relevance):
    """Clicks under the click model, then the add-to-cart and purchase funnel.

    Also returns every row's true examination probability ``[requests, positions]``.
    """
    n, k = shown.shape
    if config.click_model == "pbm":
        # float32 draws and arithmetic, kept as they are: the committed reference logs
        # depend on them bit for bit.
        examination = examination_probabilities(config.position_bias, k).astype(np.float32)
        attraction = attraction_probabilities(config.click_noise).astype(np.float32)
        click_probability = examination[None, :] * attraction[relevance]
        click = rng.random((n, k), dtype=np.float32) < click_probability
        seen = np.broadcast_to(examination_probabilities(config.position_bias, k), (n, k))
    else:
        click, seen = simulate_clicks(
            rng,
            relevance,
            MAX_RELEVANCE,
            config.click_model,
            config.click_noise,
            config.position_bias,
            config.dbn_continuation,
            config.dbn_satisfaction,
        )

    # The funnel only matters where there was a click: compute it on those rows alone.
    clicked = np.flatnonzero(click.ravel())
    product = shown.ravel()[clicked]
    who = user[clicked // k]
    rel = relevance.ravel()[clicked].astype(np.float32)
    over_budget = (
        np.maximum(world.product_price_level[product] - world.user_price_level[who], 0.0)
        * world.user_price_sensitivity[who]
    )
    quality = world.product_rating[product] - 4.0
    cart_logit = -1.2 + 0.5 * (rel - 2) - 1.5 * over_budget + 0.9 * quality
    buy_logit = -0.5 + 0.4 * (rel - 2) - 1.2 * over_budget + 0.7 * quality
    carted = rng.random(len(clicked), dtype=np.float32) < _sigmoid(cart_logit)
    bought = carted & (rng.random(len(clicked), dtype=np.float32) < _sigmoid(buy_logit))

    cart = np.zeros(n * k, dtype=np.int8)
    purchase = np.zeros(n * k, dtype=np.int8)
    cart[clicked] = carted
    purchase[clicked] = bought
    return click.astype(np.int8), cart.reshape(n, k), purchase.reshape(n, k), seen


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _timestamps(rng, config: SimulatorConfig, first: int, n: int) -> np.ndarray:
    """Epoch milliseconds, strictly increasing with the request index over ``days`` days."""
    start = datetime.fromisoformat(config.start).replace(tzinfo=UTC)  # naive = UTC
    start_ms = int(start.timestamp() * 1000)
    spacing = config.days * 86_400_000 / config.n_requests
    index = np.arange(first, first + n, dtype=np.float64) + rng.random(n) * 0.5
    return start_ms + np.floor(index * spacing).astype(np.int64)
