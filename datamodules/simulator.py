"""The search-log simulator: a personalized product-search log with known truth.

It is the suite's embedded default dataset. Everything is generated from ``SimulatorConfig``
and a seed, deterministically, and written as the canonical tables of ``tables.py``.

Generative story
----------------
1. **Catalog.** 18 hand-written categories (furniture, apparel, electronics, kitchen, ...),
   each with 2-4 surface names ("sofa" / "couch" / "settee"), the colours, materials and
   sizes that make sense for it, a brand pool and a log-normal price level. A product draws
   a category, a brand from the pool, a colour, a material and a size (``size`` is null where
   sizes do not apply), a latent quality and a latent popularity. Price is log-normal around
   the category's level plus a brand premium; rating follows quality; review count is Poisson
   in popularity. Titles and descriptions are written from the attributes with synonyms
   ("grey" / "gray" / "charcoal", "aluminium" / "aluminum"), so a query and a title often
   name the same thing with different words. Popularity and quality stay hidden.
2. **Users.** Hidden preferences: a brand affinity (+1 liked, -1 disliked, 0 neutral, per
   brand), a preferred price level (log price relative to the category level), a price
   sensitivity and a preferred colour. The ``users`` table shows only ``age_band`` and
   ``region``, weakly related to the hidden ones (age shifts the price level, region the
   colour). Users differ in activity (log-normal request rates).
3. **Queries.** Intents are anchored on real products: a category, optionally one or two
   attribute values (colour, material, size) and optionally a brand. Intent popularity is
   Zipf-Mandelbrot (long tail). Each intent has a few wordings: surface synonyms, attributes
   before or after the category, brand first or last, optional filler words ("cheap",
   "for men"). The same wording is issued by many users, who each mean something different
   by it.
4. **Truth.** The true graded relevance of product ``d`` to request ``r`` (user ``u``,
   intent ``q``) is::

       0                                  if d is not in q's category
       clip(1 + A + B + P, 0, 4)          otherwise, where
       A = 1 if q names attribute values (one or two of colour, material, size) and d has
           all of them, else 0
       B = 1 if q names a brand and d is of that brand, else 0
       P = +1 / 0 / -1 from u's preference fit s = affinity(u, brand)
           + 0.5 * price_fit + 0.5 * [d's colour is u's colour], with price_fit = +1 when
           |log price gap| <= 0.4, -1 when d is > 0.4 (log) dearer than u's level, else 0;
           P = +1 if s >= 1, -1 if s <= -0.5, else 0.

   So a disliked brand can sink an on-category product to 0, and a generic query ("couch")
   gets 0-2 from the user's tastes alone.
5. **Logging ranker.** For each request, candidates are retrieved for the intent: about 40%
   from the products matching every constraint of the intent, 40% from its category and 20%
   from anywhere in the catalog (duplicates redrawn). An imperfect ranker orders them by
   ``true relevance + logging_noise * N(0, 1) + popularity_weight * popularity z-score`` and
   shows the top ``items_per_request``. A share ``intervention_rate`` of requests is then
   randomized: ``"rand_pair"`` swaps position 1 with a uniform position k in 2..K,
   ``"rand_top"`` shuffles the whole list. As a real log with result randomization would,
   the impressions record it: ``randomized`` (1 on every row of a randomized request) and
   ``ranker_position`` (the position the logging ranker had chosen; equal to ``position``
   in requests that were not randomized). Labeling reads them to estimate position bias;
   they are logging metadata, never features.
6. **Behaviour.** Position-based click model: ``examination(p) = (1 / p) ** position_bias``,
   ``attraction(rel) = click_noise + (1 - click_noise) * (2 ** rel - 1) / 15``, and a click
   happens with probability ``examination * attraction`` (examined AND attracted). A click
   leads to an add-to-cart and a cart to a purchase with logistic probabilities that rise
   with relevance and rating and fall when the price is above the user's level (by the
   user's price sensitivity).
7. **Time.** Request timestamps increase with ``request_id`` and span ``days`` days.

Generation is vectorized over the requests of a chunk (no Python loop over requests or
rows); chunk ``i`` draws from ``SeedSequence(seed, spawn_key=(CHUNK_STREAM, i))``, so a given
(config, seed, chunk size) always yields identical tables, whether produced in memory by
:func:`simulate` or streamed to parquet by :func:`write_log`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from datamodules.atomic import atomic_path, atomic_write_json
from datamodules.tables import SearchLog, Truth

# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class CategorySpec:
    """One product category of the hand-written vocabulary."""

    name: str
    surfaces: tuple[str, ...]  # the words people and sellers use for it, canonical first
    colors: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]  # empty: size does not apply (the column is null)
    brands: tuple[str, ...]
    median_price: float
    price_sigma: float  # log-normal spread of prices within the category
    fillers: tuple[str, ...] = ()  # query tails that fit the category ("for men")
    blurb: str = ""  # last sentence of descriptions


_APPAREL_SIZES = ("S", "M", "L", "XL")

CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "sofa",
        ("sofa", "couch", "settee"),
        ("grey", "beige", "blue", "green", "brown", "black"),
        ("fabric", "leather", "velvet", "linen"),
        ("2-seater", "3-seater", "corner"),
        ("Nordhaus", "Casaverde", "Loftline", "Brookfield", "Sundvik"),
        650,
        0.45,
        ("for living room", "modern"),
        "Deep cushions for the living room.",
    ),
    CategorySpec(
        "armchair",
        ("armchair", "accent chair", "lounge chair"),
        ("grey", "beige", "green", "blue", "brown", "pink"),
        ("fabric", "leather", "velvet"),
        (),
        ("Nordhaus", "Casaverde", "Loftline", "Hallberg"),
        280,
        0.45,
        ("for reading", "modern"),
        "A cosy seat for any corner.",
    ),
    CategorySpec(
        "dining table",
        ("dining table", "kitchen table", "dinner table"),
        ("brown", "white", "black"),
        ("oak", "walnut", "glass", "pine"),
        ("4-person", "6-person", "8-person"),
        ("Oakwell", "Loftline", "Brookfield", "Timberra"),
        450,
        0.5,
        ("extendable",),
        "Seats the whole family.",
    ),
    CategorySpec(
        "bed frame",
        ("bed frame", "bed", "bedstead"),
        ("white", "black", "grey", "brown"),
        ("pine", "oak", "metal", "fabric"),
        ("single", "double", "king"),
        ("Sundvik", "Dreamhaven", "Nordhaus", "Oakwell"),
        380,
        0.5,
        ("with storage",),
        "Sturdy slats and easy assembly.",
    ),
    CategorySpec(
        "rug",
        ("rug", "area rug", "carpet"),
        ("grey", "beige", "red", "blue", "green"),
        ("wool", "jute", "cotton"),
        ("120x170 cm", "160x230 cm", "200x300 cm"),
        ("Loomwell", "Casaverde", "Kilimo"),
        150,
        0.6,
        ("for living room", "washable"),
        "Soft underfoot, easy to clean.",
    ),
    CategorySpec(
        "desk lamp",
        ("desk lamp", "table lamp", "reading lamp"),
        ("black", "white", "silver", "green"),
        ("metal", "ceramic", "glass"),
        (),
        ("Lumina", "Brightway", "Loftline"),
        45,
        0.5,
        ("led", "for office"),
        "Warm light for work and reading.",
    ),
    CategorySpec(
        "laptop",
        ("laptop", "notebook", "notebook computer"),
        ("silver", "grey", "black"),
        ("aluminium", "plastic"),
        ("13 inch", "14 inch", "15 inch", "17 inch"),
        ("Voltek", "Nexora", "Parabyte", "Aerion"),
        900,
        0.45,
        ("for students", "for work", "for gaming"),
        "All-day battery and a crisp screen.",
    ),
    CategorySpec(
        "smartphone",
        ("smartphone", "phone", "mobile phone", "cell phone"),
        ("black", "white", "blue", "silver", "pink", "green"),
        ("glass", "aluminium"),
        ("128gb", "256gb", "512gb"),
        ("Voltek", "Nexora", "Orbix", "Kiyomi"),
        550,
        0.55,
        ("unlocked", "5g"),
        "A fast camera phone with all-day battery.",
    ),
    CategorySpec(
        "headphones",
        ("headphones", "headset", "earphones"),
        ("black", "white", "silver", "blue"),
        ("plastic", "aluminium", "leather"),
        (),
        ("Sonara", "Voltek", "Audiora", "Kiyomi"),
        110,
        0.6,
        ("wireless", "noise cancelling", "bluetooth"),
        "Rich sound, all-day comfort.",
    ),
    CategorySpec(
        "television",
        ("tv", "television", "smart tv"),
        ("black", "silver"),
        ("plastic", "aluminium"),
        ("43 inch", "55 inch", "65 inch", "75 inch"),
        ("Nexora", "Orbix", "Kiyomi", "Vistaq"),
        700,
        0.5,
        ("4k", "hdr"),
        "Vivid picture with built-in streaming.",
    ),
    CategorySpec(
        "sneakers",
        ("sneakers", "trainers", "running shoes"),
        ("white", "black", "grey", "blue", "red"),
        ("mesh", "leather", "canvas", "suede"),
        ("8", "9", "10", "11"),
        ("Stridex", "Velox", "Peakform", "Runova"),
        85,
        0.45,
        ("for men", "for women", "for running"),
        "Light and cushioned for every day.",
    ),
    CategorySpec(
        "t-shirt",
        ("t-shirt", "tee", "tshirt"),
        ("white", "black", "grey", "blue", "red", "green", "pink"),
        ("cotton", "organic cotton", "polyester", "linen"),
        _APPAREL_SIZES,
        ("Peakform", "Threadly", "Basicco", "Velox"),
        18,
        0.4,
        ("for men", "for women"),
        "A soft everyday basic.",
    ),
    CategorySpec(
        "jeans",
        ("jeans", "denim trousers", "denims"),
        ("blue", "black", "grey"),
        ("denim", "stretch denim"),
        ("W30", "W32", "W34", "W36"),
        ("Threadly", "Rivetco", "Basicco", "Indigoe"),
        55,
        0.4,
        ("for men", "for women", "slim fit"),
        "Classic five-pocket styling.",
    ),
    CategorySpec(
        "jacket",
        ("jacket", "coat", "parka"),
        ("black", "green", "blue", "beige", "red"),
        ("down", "wool", "nylon", "leather"),
        _APPAREL_SIZES,
        ("Peakform", "Northpeak", "Threadly", "Velox"),
        120,
        0.5,
        ("for men", "for women", "waterproof"),
        "Keeps the weather out.",
    ),
    CategorySpec(
        "frying pan",
        ("frying pan", "skillet", "fry pan"),
        ("black", "silver", "red"),
        ("stainless steel", "cast iron", "non-stick"),
        ("20 cm", "24 cm", "28 cm"),
        ("Cookwell", "Ferrocasa", "Chefline", "Kochhaus"),
        35,
        0.5,
        ("induction",),
        "Even heating on every hob.",
    ),
    CategorySpec(
        "coffee maker",
        ("coffee maker", "coffee machine", "coffee brewer"),
        ("black", "silver", "red", "white"),
        ("stainless steel", "plastic"),
        (),
        ("Brewmaster", "Cookwell", "Kochhaus", "Baristo"),
        120,
        0.6,
        ("with grinder", "programmable"),
        "Fresh coffee at the press of a button.",
    ),
    CategorySpec(
        "kettle",
        ("kettle", "electric kettle", "water boiler"),
        ("white", "black", "silver", "red"),
        ("stainless steel", "glass", "plastic"),
        ("1 litre", "1.7 litre"),
        ("Cookwell", "Chefline", "Brewmaster"),
        40,
        0.45,
        ("fast boil",),
        "Boils quickly and switches off by itself.",
    ),
    CategorySpec(
        "backpack",
        ("backpack", "rucksack", "daypack"),
        ("black", "grey", "blue", "green", "red"),
        ("nylon", "canvas", "leather"),
        ("20 litre", "30 litre"),
        ("Northpeak", "Trekwise", "Velox", "Rivetco"),
        60,
        0.5,
        ("for school", "for hiking", "waterproof"),
        "Padded straps and plenty of pockets.",
    ),
)

COLOR_SURFACES: dict[str, tuple[str, ...]] = {
    "black": ("black", "jet black", "ebony"),
    "white": ("white", "ivory", "off-white"),
    "grey": ("grey", "gray", "charcoal"),
    "blue": ("blue", "navy", "cobalt"),
    "red": ("red", "crimson", "burgundy"),
    "green": ("green", "olive", "sage"),
    "beige": ("beige", "cream", "sand"),
    "brown": ("brown", "tan", "chocolate"),
    "pink": ("pink", "blush", "rose"),
    "silver": ("silver", "metallic", "chrome"),
}

MATERIAL_SURFACES: dict[str, tuple[str, ...]] = {
    "fabric": ("fabric", "upholstered", "textile"),
    "leather": ("leather", "genuine leather"),
    "velvet": ("velvet", "velour"),
    "linen": ("linen", "flax"),
    "oak": ("oak", "solid oak", "oak wood"),
    "walnut": ("walnut", "walnut wood"),
    "glass": ("glass", "tempered glass"),
    "pine": ("pine", "pinewood", "solid pine"),
    "metal": ("metal", "steel", "iron"),
    "wool": ("wool", "woollen", "merino"),
    "jute": ("jute", "natural fibre"),
    "cotton": ("cotton", "100% cotton"),
    "organic cotton": ("organic cotton", "eco cotton"),
    "polyester": ("polyester", "poly"),
    "mesh": ("mesh", "breathable mesh"),
    "canvas": ("canvas",),
    "suede": ("suede", "nubuck"),
    "denim": ("denim",),
    "stretch denim": ("stretch denim", "stretch"),
    "down": ("down", "down-filled", "puffer"),
    "nylon": ("nylon", "ripstop"),
    "aluminium": ("aluminium", "aluminum", "metal"),
    "plastic": ("plastic", "polycarbonate"),
    "ceramic": ("ceramic", "porcelain"),
    "stainless steel": ("stainless steel", "steel", "inox"),
    "cast iron": ("cast iron", "cast-iron"),
    "non-stick": ("non-stick", "nonstick", "teflon-coated"),
}

SIZE_SURFACES: dict[str, tuple[str, ...]] = {
    "2-seater": ("2-seater", "two seater", "2 seat"),
    "3-seater": ("3-seater", "three seater", "3 seat"),
    "corner": ("corner", "l-shaped", "sectional"),
    "4-person": ("4-person", "4 seater", "for 4"),
    "6-person": ("6-person", "6 seater", "for 6"),
    "8-person": ("8-person", "8 seater", "for 8"),
    "single": ("single", "twin"),
    "double": ("double", "full size"),
    "king": ("king", "king size", "king-size"),
    "120x170 cm": ("120x170 cm", "small"),
    "160x230 cm": ("160x230 cm", "medium"),
    "200x300 cm": ("200x300 cm", "large"),
    "S": ("small", "size s"),
    "M": ("medium", "size m"),
    "L": ("large", "size l"),
    "XL": ("xl", "extra large", "size xl"),
    "8": ("size 8", "uk 8"),
    "9": ("size 9", "uk 9"),
    "10": ("size 10", "uk 10"),
    "11": ("size 11", "uk 11"),
    "W30": ("w30", "30 waist"),
    "W32": ("w32", "32 waist"),
    "W34": ("w34", "34 waist"),
    "W36": ("w36", "36 waist"),
    "20 cm": ("20 cm", "20cm", "8 inch"),
    "24 cm": ("24 cm", "24cm", "10 inch"),
    "28 cm": ("28 cm", "28cm", "11 inch"),
    "1 litre": ("1 litre", "1l", "1 liter"),
    "1.7 litre": ("1.7 litre", "1.7l", "1.7 liter"),
    "20 litre": ("20 litre", "20l"),
    "30 litre": ("30 litre", "30l"),
}
"""Sizes missing here ("13 inch", "128gb") are written as they are."""

QUERY_PREFIXES = ("cheap", "best", "new", "affordable", "buy", "premium", "top rated")
QUERY_SUFFIXES = ("sale", "deals", "online")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
REGIONS = ("north", "south", "east", "west", "central")

# Random streams: each part of the simulation draws from its own SeedSequence child, so
# changing one part (say the number of intents) does not reshuffle the others.
CATALOG_STREAM, USER_STREAM, INTENT_STREAM, WORDING_STREAM, CHUNK_STREAM = range(5)

_MAX_CANDIDATES = 64  # column index packs into 6 bits of the ranking sort key
_ATTRIBUTES = ("color", "material", "size")  # the attributes an intent may name, in order

# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that determines a simulated log. Same config => identical tables."""

    n_requests: int
    items_per_request: int
    n_products: int
    n_users: int
    n_query_intents: int  # distinct intents (capped at what the catalog offers, ~4k)
    position_bias: float = 1.0  # eta in examination(p) = (1 / p) ** eta
    intervention_rate: float = 0.1  # share of requests whose shown list is randomized
    intervention: str = "rand_pair"  # "rand_pair": swap 1 <-> k; "rand_top": shuffle all
    logging_noise: float = 1.0  # std of the logging ranker's noise on true relevance
    popularity_weight: float = 0.5  # weight of popularity (z-score) in the logging ranker
    click_noise: float = 0.05  # epsilon: attraction of an irrelevant item
    candidates_per_item: float = 2.0  # candidates retrieved per shown slot
    intent_match_share: float = 0.4  # candidates from products matching the whole intent
    off_category_share: float = 0.2  # candidates from anywhere in the catalog
    query_zipf: float = 1.0  # exponent s of intent popularity 1 / (rank + shift) ** s
    query_zipf_shift: float = 3.0  # flattens the head: no single intent dominates the log
    wordings_per_intent: int = 6  # distinct query texts written for one intent
    days: float = 30.0  # time span of the log
    start: str = "2024-01-01"  # first timestamp (ISO date)
    seed: int = 0
    chunk_requests: int = 200_000  # requests per generated chunk (bounds memory)

    def __post_init__(self):
        for name in (
            "n_requests",
            "items_per_request",
            "n_products",
            "n_users",
            "n_query_intents",
            "wordings_per_intent",
            "chunk_requests",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"SimulatorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.items_per_request < 2:
            raise ValueError("SimulatorConfig.items_per_request must be >= 2")
        if not self.items_per_request <= self.n_candidates <= _MAX_CANDIDATES:
            raise ValueError(
                f"candidates per request ({self.n_candidates}) must lie between "
                f"items_per_request ({self.items_per_request}) and {_MAX_CANDIDATES}"
            )
        if self.n_products < max(2 * self.n_candidates, len(CATEGORIES)):
            raise ValueError(
                f"n_products ({self.n_products}) must be >= max(2 * candidates per request, "
                f"number of categories) = {max(2 * self.n_candidates, len(CATEGORIES))}"
            )
        if self.intervention not in ("rand_pair", "rand_top"):
            raise ValueError(
                f"unknown intervention {self.intervention!r}; valid: 'rand_pair', 'rand_top'"
            )
        for name in (
            "intervention_rate",
            "click_noise",
            "intent_match_share",
            "off_category_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimulatorConfig.{name} must lie in [0, 1]")
        if self.intent_match_share + self.off_category_share > 1.0:
            raise ValueError("intent_match_share + off_category_share must be <= 1")
        if self.position_bias < 0 or self.logging_noise < 0 or self.days <= 0:
            raise ValueError("position_bias and logging_noise must be >= 0, days > 0")

    @property
    def n_candidates(self) -> int:
        return math.ceil(self.candidates_per_item * self.items_per_request)

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_requests / self.chunk_requests)


PRESETS: dict[str, SimulatorConfig] = {
    "tiny": SimulatorConfig(
        n_requests=200, items_per_request=8, n_products=200, n_users=50, n_query_intents=40
    ),
    "ci": SimulatorConfig(
        n_requests=2_000, items_per_request=10, n_products=1_000, n_users=300, n_query_intents=300
    ),
    "default": SimulatorConfig(
        n_requests=20_000,
        items_per_request=10,
        n_products=5_000,
        n_users=2_000,
        n_query_intents=2_000,
    ),
    "large": SimulatorConfig(
        n_requests=1_000_000,
        items_per_request=20,
        n_products=50_000,
        n_users=100_000,
        n_query_intents=3_500,
        chunk_requests=100_000,
    ),
}


def preset(name: str, **overrides) -> SimulatorConfig:
    """A named configuration, with any field overridden (``preset("ci", seed=3)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown simulator preset {name!r}; valid: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def examination_probabilities(position_bias: float, n_positions: int) -> np.ndarray:
    """True probability that position p (1-based) is looked at: (1 / p) ** position_bias."""
    return (1.0 / np.arange(1, n_positions + 1)) ** position_bias


def attraction_probabilities(click_noise: float) -> np.ndarray:
    """Probability that an examined item of relevance 0..4 is clicked."""
    gain = (2.0 ** np.arange(5) - 1.0) / 15.0
    return click_noise + (1.0 - click_noise) * gain


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- public API


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
    """Products, users and examination once, then impressions and truth chunk by chunk."""
    world = _build_world(config)
    catalog = SimulatedCatalog(world.products, world.users, _examination_table(config))
    return catalog, _iter_chunks(world, config, progress)


def write_log(config: SimulatorConfig, out_dir: Path, progress: bool = True) -> dict:
    """Stream the log to parquet files in ``out_dir``; return a small summary.

    Layout: ``products.parquet``, ``users.parquet``, ``truth_examination.parquet``, and
    ``impressions/`` and ``truth_relevance/`` holding ``part-00000.parquet``
    ... one per chunk, then ``manifest.json`` (config and summary) last, so a directory with a
    manifest is complete. Every file is written under a temporary name and renamed into place.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    catalog, chunks = simulate_chunks(config, progress=progress)
    for name, table in (
        ("products", catalog.products),
        ("users", catalog.users),
        ("truth_examination", catalog.examination),
    ):
        _write_parquet_atomic(table, out_dir / f"{name}.parquet")
    rows = 0
    for chunk in chunks:
        part = f"part-{chunk.index:05d}.parquet"
        _write_parquet_atomic(chunk.impressions, out_dir / "impressions" / part)
        _write_parquet_atomic(chunk.relevance, out_dir / "truth_relevance" / part)
        rows += chunk.impressions.height
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


# --------------------------------------------------------------------------- the world


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


def _stream_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class _Vocabulary:
    """The hand-written vocabulary as integer codes and flat lookup tables."""

    categories: tuple[CategorySpec, ...]
    colors: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]
    brands: tuple[str, ...]
    category_colors: list[np.ndarray]  # per category: global colour codes
    category_materials: list[np.ndarray]
    category_sizes: list[np.ndarray]
    category_brands: list[np.ndarray]

    @classmethod
    def build(cls) -> _Vocabulary:
        colors = tuple(COLOR_SURFACES)
        materials = tuple(MATERIAL_SURFACES)
        sizes = tuple(dict.fromkeys(s for c in CATEGORIES for s in c.sizes))
        brands = tuple(dict.fromkeys(b for c in CATEGORIES for b in c.brands))

        def codes(values, universe):
            return np.array([universe.index(v) for v in values], dtype=np.int16)

        return cls(
            CATEGORIES,
            colors,
            materials,
            sizes,
            brands,
            [codes(c.colors, colors) for c in CATEGORIES],
            [codes(c.materials, materials) for c in CATEGORIES],
            [codes(c.sizes, sizes) for c in CATEGORIES],
            [codes(c.brands, brands).astype(np.int32) for c in CATEGORIES],
        )

    def surfaces(self, attribute: str) -> list[tuple[str, ...]]:
        """Synonyms of every code of ``attribute`` ("category", "color", ...), code order."""
        if attribute == "category":
            return [c.surfaces for c in self.categories]
        if attribute == "color":
            return [COLOR_SURFACES[c] for c in self.colors]
        if attribute == "material":
            return [MATERIAL_SURFACES[m] for m in self.materials]
        return [SIZE_SURFACES.get(s, (s,)) for s in self.sizes]


class _SurfaceTable:
    """Synonym lists flattened so that a random synonym of many codes is one gather."""

    def __init__(self, synonyms: list[tuple[str, ...]]):
        self.strings = pl.Series([s for group in synonyms for s in group], dtype=pl.String)
        self.count = np.array([len(g) for g in synonyms], dtype=np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])

    def pick(self, rng: np.random.Generator, codes: np.ndarray) -> pl.Series:
        """One random synonym per code (codes >= 0; use :meth:`pick_or_null` otherwise)."""
        offset = (rng.random(len(codes)) * self.count[codes]).astype(np.int64)
        return self.strings.gather(self.start[codes] + offset)

    def pick_or_null(self, rng: np.random.Generator, codes: np.ndarray) -> pl.Series:
        """Like :meth:`pick`, with null where the code is -1."""
        picked = self.pick(rng, np.maximum(codes, 0))
        return pl.select(pl.when(pl.Series(codes) >= 0).then(picked)).to_series()


def _choose_within(
    rng: np.random.Generator, category: np.ndarray, options: list[np.ndarray], skew: float = 1.0
) -> np.ndarray:
    """For each row, one of its category's ``options`` (-1 where the category has none).

    ``skew`` > 1 makes the first options more common (a few dominant colours or brands).
    """
    counts = np.array([len(o) for o in options], dtype=np.int64)
    table = np.full((len(options), max(1, counts.max())), -1, dtype=np.int32)
    for row, values in enumerate(options):
        table[row, : len(values)] = values
    local = (rng.random(len(category)) ** skew * counts[category]).astype(np.int64)
    return table[category, np.minimum(local, np.maximum(counts[category] - 1, 0))]


# --------------------------------------------------------------------------- catalog


def _generate_products(config: SimulatorConfig, vocab: _Vocabulary, rng) -> dict:
    n, n_cat = config.n_products, len(vocab.categories)
    # Every category gets at least one product; the rest follow uneven category sizes.
    share = rng.dirichlet(np.full(n_cat, 4.0))
    category = np.concatenate([np.arange(n_cat), rng.choice(n_cat, n - n_cat, p=share)])
    category = rng.permutation(category).astype(np.int32)

    brand = _choose_within(rng, category, vocab.category_brands, skew=1.4)
    color = _choose_within(rng, category, vocab.category_colors, skew=1.3)
    material = _choose_within(rng, category, vocab.category_materials, skew=1.2)
    size = _choose_within(rng, category, vocab.category_sizes)

    quality = rng.standard_normal(n)
    rating = np.clip(np.round(4.0 + 0.45 * quality + 0.25 * rng.standard_normal(n), 1), 1, 5)
    median = np.log([c.median_price for c in vocab.categories])[category]
    sigma = np.array([c.price_sigma for c in vocab.categories])[category]
    brand_premium = rng.normal(0.0, 0.25, len(vocab.brands))[brand]
    log_price = median + brand_premium + sigma * rng.standard_normal(n) + 0.1 * quality
    price = np.maximum(np.round(np.exp(log_price)) - 0.01, 0.99)
    log_popularity = rng.standard_normal(n) + 0.4 * quality
    review_count = rng.poisson(25.0 * np.exp(log_popularity))

    title, description = _write_product_texts(rng, vocab, category, brand, color, material, size)
    products = pl.DataFrame(
        {
            "product_id": np.arange(1, n + 1, dtype=np.int64),
            "title": title,
            "description": description,
            "category": pl.Series([c.name for c in vocab.categories]).gather(category),
            "brand": pl.Series(vocab.brands).gather(brand),
            "color": _names_or_null(vocab.colors, color),
            "material": _names_or_null(vocab.materials, material),
            "size": _names_or_null(vocab.sizes, size),
            "price": price.astype(np.float64),
            "rating": rating.astype(np.float64),
            "review_count": review_count.astype(np.int64),
        }
    )
    attributes = np.stack([color + 1, material + 1, size + 1])  # row-major per attribute
    order = np.argsort(category, kind="stable").astype(np.int32)
    size_of = np.bincount(category, minlength=n_cat).astype(np.int64)
    return {
        "products": products,
        "product_category": category,
        "product_brand": brand.astype(np.int32),
        "product_attributes": attributes.astype(np.int16),
        "product_price_level": (np.log(price) - median).astype(np.float32),
        "product_rating": rating.astype(np.float32),
        "product_popularity": _zscore(log_popularity).astype(np.float32),
        "category_products": order,
        "category_start": np.concatenate([[0], np.cumsum(size_of)[:-1]]),
        "category_size": size_of,
    }


def _names_or_null(names: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    values = pl.Series(names, dtype=pl.String).gather(np.maximum(codes, 0))
    return pl.select(pl.when(pl.Series(codes) >= 0).then(values)).to_series()


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() or 1.0)


def _write_product_texts(rng, vocab, category, brand, color, material, size):
    """Titles and descriptions from the attributes, each word a random synonym."""
    cat_words, color_words, material_words, size_words = (
        _SurfaceTable(vocab.surfaces(a)) for a in ("category", "color", "material", "size")
    )
    words = pl.DataFrame(
        {
            "brand": pl.Series(vocab.brands).gather(brand),
            "cat": cat_words.pick(rng, category),
            "color": color_words.pick_or_null(rng, color),
            "material": material_words.pick_or_null(rng, material),
            "size": size_words.pick_or_null(rng, size),
            "cat2": cat_words.pick(rng, category),
            "color2": color_words.pick_or_null(rng, color),
            "material2": material_words.pick_or_null(rng, material),
            "blurb": pl.Series([c.blurb for c in vocab.categories]).gather(category),
            "template": rng.integers(0, 4, len(category)),
        }
    )
    b, c, co, m, s = (pl.col(x) for x in ("brand", "cat", "color", "material", "size"))

    def tail(sep: str, end: str = "") -> pl.Expr:  # ", 3-seater" or "" when no size
        return pl.concat_str([pl.lit(sep), s, pl.lit(end)]).fill_null("")

    templates = [
        pl.concat_str([b, pl.lit(" "), co, pl.lit(" "), m, pl.lit(" "), c, tail(", ")]),
        pl.concat_str([b, pl.lit(" "), c, pl.lit(" in "), co, pl.lit(", "), m, tail(" - ")]),
        pl.concat_str([co, pl.lit(" "), m, pl.lit(" "), c, pl.lit(" by "), b, tail(" (", ")")]),
        pl.concat_str([b, pl.lit(" "), m, pl.lit(" "), c, tail(" "), pl.lit(" - "), co]),
    ]
    title = pl.when(pl.col("template") == 0).then(templates[0])
    for i, expr in enumerate(templates[1:], start=1):
        title = title.when(pl.col("template") == i).then(expr)
    description = pl.concat_str(
        [
            pl.col("cat2").str.slice(0, 1).str.to_uppercase(),
            pl.col("cat2").str.slice(1),
            pl.lit(" by "),
            b,
            pl.lit(" in "),
            pl.col("color2"),
            pl.lit(", made of "),
            pl.col("material2"),
            pl.lit(". "),
            pl.col("blurb"),
        ]
    )
    texts = words.select(
        title=title.otherwise(templates[0])
        .str.to_titlecase()
        .str.replace_many([" By ", " In "], [" by ", " in "]),
        description=description,
    )
    return texts["title"], texts["description"]


# --------------------------------------------------------------------------- users


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


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def _sample_from_cdf(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


# --------------------------------------------------------------------------- intents


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


# --------------------------------------------------------------------------- chunks


def _examination_table(config: SimulatorConfig) -> pl.DataFrame:
    k = config.items_per_request
    return pl.DataFrame(
        {
            "position": np.arange(1, k + 1, dtype=np.int32),
            "examination": examination_probabilities(config.position_bias, k),
        }
    )


def _iter_chunks(world: _World, config: SimulatorConfig, progress: bool):
    bar = tqdm(total=config.n_chunks, disable=not progress, desc="simulating", unit="chunk")
    try:
        for index in range(config.n_chunks):
            first = index * config.chunk_requests
            n = min(config.chunk_requests, config.n_requests - first)
            yield _generate_chunk(world, config, index, first, n)
            bar.update(1)
    finally:
        bar.close()


def _generate_chunk(
    world: _World, config: SimulatorConfig, index: int, first: int, n: int
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
    click, cart, purchase = _behaviour(rng, world, config, user, shown, shown_relevance)

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
    """The documented relevance rule (module docstring, step 4), int8 0..4."""
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
    return np.clip(score, 0, 4) * on_category.view(np.int8)


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
    """Which requests are randomized, and for each the column shown at each position."""
    k = config.items_per_request
    randomized = np.flatnonzero(rng.random(n) < config.intervention_rate)
    m = len(randomized)
    if config.intervention == "rand_top":
        permutation = np.argsort(rng.random((m, k)), axis=1)
    else:  # rand_pair: swap position 1 with a uniform position k in 2..K
        partner = rng.integers(1, k, m)
        permutation = np.tile(np.arange(k), (m, 1))
        permutation[:, 0] = partner
        permutation[np.arange(m), partner] = 0
    return randomized, permutation


def _behaviour(rng, world: _World, config: SimulatorConfig, user, shown, relevance):
    """Clicks from the position-based model, then the add-to-cart and purchase funnel."""
    n, k = shown.shape
    examination = examination_probabilities(config.position_bias, k).astype(np.float32)
    attraction = attraction_probabilities(config.click_noise).astype(np.float32)
    click_probability = examination[None, :] * attraction[relevance]
    click = rng.random((n, k), dtype=np.float32) < click_probability

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
    return click.astype(np.int8), cart.reshape(n, k), purchase.reshape(n, k)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _timestamps(rng, config: SimulatorConfig, first: int, n: int) -> np.ndarray:
    """Epoch milliseconds, strictly increasing with the request index over ``days`` days."""
    start = datetime.fromisoformat(config.start).replace(tzinfo=UTC)  # naive = UTC
    start_ms = int(start.timestamp() * 1000)
    spacing = config.days * 86_400_000 / config.n_requests
    index = np.arange(first, first + n, dtype=np.float64) + rng.random(n) * 0.5
    return start_ms + np.floor(index * spacing).astype(np.int64)


# --------------------------------------------------------------------------- writing


def _write_parquet_atomic(table: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp, compression="lz4", statistics=False)


def _remove_stale_parts(folder: Path, n_parts: int) -> None:
    """Parts left by an earlier, longer run in the same folder would be read back."""
    for path in folder.glob("part-*.parquet"):
        if int(path.stem.split("-")[1]) >= n_parts:
            path.unlink()
