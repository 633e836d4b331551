"""The query intents anchored on products, the products matching each, and their wordings."""

from __future__ import annotations

import numpy as np
import polars as pl

from datamodules.simulator.config import SimulatorConfig
from datamodules.simulator.lexicon import _Vocabulary
from datamodules.simulator.streams import _cdf
from datamodules.simulator.vocabulary import QUERY_PREFIXES, QUERY_SUFFIXES, CategorySpec

_ATTRIBUTES = ("color", "material", "size")  # the attributes an intent may name, in order

# Attribute sets an intent may name (bits: 1 colour, 2 material, 4 size) and how often.
_INTENT_ATTRIBUTE_SETS = np.array([0, 1, 2, 4, 1 | 2, 1 | 4, 2 | 4])
_INTENT_ATTRIBUTE_SHARES = np.array([0.40, 0.22, 0.12, 0.08, 0.07, 0.07, 0.04])
_BRANDED_INTENT_SHARE = 0.25  # intents that name a brand


def _generate_intents(config: SimulatorConfig, catalog: dict, rng) -> dict:
    """Distinct intents, each one a product's category with some of its attributes.

    Every product offers 14 intents: its category with none, one or two of its attribute
    values (7 sets, weighted by ``_INTENT_ATTRIBUTE_SHARES``), with or without its brand.
    Intents shared by many products carry their summed weight. ``n_query_intents`` of them
    (or all, if the catalog offers fewer) are drawn without replacement in proportion to the
    weight; the draw order is their popularity rank, so common intents tend to be popular.
    """
    products = catalog["product_attributes"].T.astype(np.int64)
    spans = (int(products.max()) + 1, int(catalog["product_brand"].max()) + 2)
    keys, weights = [], []
    for attribute_set, share in zip(_INTENT_ATTRIBUTE_SETS, _INTENT_ATTRIBUTE_SHARES, strict=True):
        named = products * ((attribute_set >> np.arange(3)) & 1)  # zero a product lacks
        for brand, brand_share in (
            (None, 1 - _BRANDED_INTENT_SHARE),
            (catalog["product_brand"], _BRANDED_INTENT_SHARE),
        ):
            keys.append(_intent_key(catalog["product_category"], named, brand, *spans))
            weights.append(np.full(len(products), share * brand_share))
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    weight = np.bincount(inverse, weights=np.concatenate(weights))
    # Weighted sampling without replacement (Efraimidis-Spirakis): smallest Exp(1) / weight.
    order = np.argsort(rng.exponential(size=len(unique)) / weight, kind="stable")
    chosen = unique[order[: config.n_query_intents]]
    category, values, brand = _decode_intent_key(chosen, *spans)
    rank = np.arange(1, len(chosen) + 1)
    popularity = 1.0 / (rank + config.query_zipf_shift) ** config.query_zipf
    return {
        "intent_category": category.astype(np.int32),
        "intent_values": values.astype(np.int16),
        "intent_brand": brand.astype(np.int32),
        "intent_cdf": _cdf(popularity),
        **_intent_pools(catalog, category, values, brand),
    }


def _decode_intent_key(key: np.ndarray, attr_span: int, brand_span: int):
    """Inverse of :func:`_intent_key`: category, (n, 3) attribute values, brand (-1: none)."""
    key, brand = np.divmod(key, brand_span)
    values = np.zeros((len(key), 3), dtype=np.int64)
    for column in (2, 1, 0):
        key, values[:, column] = np.divmod(key, attr_span)
    return key, values, brand - 1


def _intent_pools(catalog: dict, category, values, brand) -> dict:
    """The products matching each intent, as ranges of 16 sorted product orders.

    An intent's constraints have one of 16 shapes (which of the 3 attributes it names, brand
    or not). For each shape, sorting the products by the key (category, named attribute
    values, brand) makes every intent's matching products one contiguous range, found by
    binary search.
    """
    products = catalog["product_attributes"].T.astype(np.int64)
    n_products = len(products)
    spans = (int(products.max()) + 1, int(catalog["product_brand"].max()) + 2)
    intent_shape = ((values > 0) * np.array([1, 2, 4])).sum(axis=1) * 2 + (brand >= 0)
    orders = []
    start, size = np.zeros(len(category), np.int64), np.zeros(len(category), np.int64)
    for shape in range(16):
        attribute_set, with_brand = divmod(shape, 2)
        mask = (attribute_set >> np.arange(3)) & 1
        product_key = _intent_key(
            catalog["product_category"],
            products * mask,
            catalog["product_brand"] if with_brand else None,
            *spans,
        )
        order = np.argsort(product_key, kind="stable")
        sorted_key = product_key[order]
        mine = intent_shape == shape
        key = _intent_key(category[mine], values[mine], brand[mine] if with_brand else None, *spans)
        low = np.searchsorted(sorted_key, key, side="left")
        start[mine] = shape * n_products + low
        size[mine] = np.searchsorted(sorted_key, key, side="right") - low
        orders.append(order)
    assert size.min() >= 1, "every intent is anchored on a product, so its pool is non-empty"
    return {
        "pool_products": np.concatenate(orders).astype(np.int32),
        "pool_start": start,
        "pool_size": size,
    }


def _intent_key(category, values, brand, attr_span: int, brand_span: int) -> np.ndarray:
    """One int64 per row from (category, 3 attribute codes (0: not named), brand or none)."""
    key = category.astype(np.int64)
    for column in range(3):
        key = key * attr_span + values[:, column].astype(np.int64)
    return key * brand_span + (0 if brand is None else brand.astype(np.int64) + 1)


def _write_wordings(config: SimulatorConfig, vocab: _Vocabulary, intents: dict, rng) -> pl.Series:
    """``wordings_per_intent`` query texts per intent (a loop over intents, not requests)."""
    n_variants = config.wordings_per_intent
    n = len(intents["intent_category"])
    draws = rng.random((n * n_variants, 9)).tolist()  # Python floats: fast in the loop below
    synonyms = [vocab.surfaces(a) for a in _ATTRIBUTES]
    texts = []
    for i in range(n):
        spec = vocab.categories[intents["intent_category"][i]]
        named = [(t, synonyms[t][v - 1]) for t, v in enumerate(intents["intent_values"][i]) if v]
        brand = int(intents["intent_brand"][i])
        brand_word = vocab.brands[brand].lower() if brand >= 0 else ""
        for u in draws[i * n_variants : (i + 1) * n_variants]:
            texts.append(_one_wording(spec, named, brand_word, u))
    return pl.Series("query", texts, dtype=pl.String)


def _one_wording(spec: CategorySpec, named: list, brand_word: str, u: list[float]) -> str:
    """One query text: synonyms, attribute and brand placement, filler words, all from ``u``."""

    def pick(options, x):
        return options[min(int(x * len(options)), len(options) - 1)]

    words = [pick(options, u[1 + t]) for t, options in named]  # colour, material, size order
    if len(words) == 2 and u[4] < 0.3:
        words.reverse()
    text = pick(spec.surfaces, u[0])
    if len(named) == 1 and named[0][0] == 0 and 0.7 <= u[5] < 0.85:
        text = f"{text} in {words[0]}"  # "couch in charcoal"
    elif words and u[5] >= 0.7:
        text = f"{words[0]} {text} {words[1]}" if len(words) == 2 else f"{text} {words[0]}"
    elif words:
        text = f"{' '.join(words)} {text}"
    if brand_word:
        if u[6] < 0.6:
            text = f"{brand_word} {text}"
        elif u[6] < 0.8:
            text = f"{text} {brand_word}"
        else:
            text = f"{text} by {brand_word}"
    if u[7] < 0.15:
        text = f"{pick(QUERY_PREFIXES, u[8])} {text}"
    elif u[7] < 0.3:
        text = f"{text} {pick(spec.fillers + QUERY_SUFFIXES, u[8])}"
    return text
