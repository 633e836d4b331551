"""The catalog: products drawn per category, their hidden quality and popularity, prices,
ratings, and titles and descriptions written with synonyms."""

from __future__ import annotations

import numpy as np
import polars as pl

from datamodules.simulator.config import SimulatorConfig
from datamodules.simulator.lexicon import _SurfaceTable, _Vocabulary


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
