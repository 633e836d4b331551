"""The vocabulary indexed: integer codes per category, and flat synonym tables to draw from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datamodules.simulator.vocabulary import (
    CATEGORIES,
    COLOR_SURFACES,
    MATERIAL_SURFACES,
    SIZE_SURFACES,
    CategorySpec,
)


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
