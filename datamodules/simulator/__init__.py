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
   randomized within the top ``intervention_depth`` positions D (default: all K):
   ``"rand_pair"`` swaps position 1 with a uniform position k in 2..D, ``"rand_top"``
   shuffles positions 1..D; the positions below D keep the ranker's order. As a real log
   with result randomization would, the impressions record it: ``randomized`` (1 on every
   row of a randomized request) and ``ranker_position`` (the position the logging ranker
   had chosen; equal to ``position`` in requests that were not randomized). Labeling reads
   them to estimate position bias; they are logging metadata, never features.
6. **Behaviour.** An examined item is clicked with its attraction
   ``attraction(rel) = click_noise + (1 - click_noise) * gain``, ``gain = (2 ** rel - 1) / 15``
   (an irrelevant item at the noise rate). Which items are examined is the ``click_model``'s
   (``datamodules.click_models``):

   - ``"pbm"`` (default), position-based: position p is examined with probability
     ``(1 / p) ** position_bias`` whatever is shown, so a click happens with probability
     ``examination * attraction``.
   - ``"cascade"`` (Craswell et al., WSDM 2008): the user reads from the top and stops at
     the first click, so a request has at most one click.
   - ``"dbn"``, the dynamic Bayesian network (Chapelle & Zhang, WWW 2009): after a click the
     user is satisfied with probability ``dbn_satisfaction * gain`` and stops; otherwise they
     read on with probability ``dbn_continuation``.

   Under cascade and dbn a position's examination depends on the items above it; the truth
   then holds each position's mean examination over the whole log. A click leads to an
   add-to-cart and a cart to a purchase with logistic probabilities that rise with
   relevance and rating and fall when the price is above the user's level (by the user's
   price sensitivity), whichever model made the clicks.
7. **Time.** Request timestamps increase with ``request_id`` and span ``days`` days.

Generation is vectorized over the requests of a chunk (no Python loop over requests or
rows); chunk ``i`` draws from ``SeedSequence(seed, spawn_key=(CHUNK_STREAM, i))``, so a given
(config, seed, chunk size) always yields identical tables, whether produced in memory by
:func:`simulate` or streamed to parquet by :func:`write_log`.

Layout
------
- ``vocabulary``: the hand-written vocabulary as data (categories, synonyms, query words).
- ``config``: ``SimulatorConfig``, ``PRESETS`` (``DEFAULT_PRESET``), ``preset`` and the
  position-based examination and the attraction probabilities.
- ``streams``: the random streams (one per part) and sampling from cumulative weights.
- ``lexicon``: the vocabulary as integer codes and flat synonym tables.
- ``catalog``, ``users``, ``intents``: steps 1-3; ``world`` builds them once per log.
- ``impressions``: steps 4-7, one chunk of requests at a time.
- ``results``, ``api``: what :func:`simulate` and :func:`simulate_chunks` hand out, and the
  true examination filled as the chunks are generated (``TrueExamination``).
- ``io``: :func:`write_log` and :func:`read_log`, the log as parquet parts and a manifest.
"""

from datamodules.simulator.api import simulate, simulate_chunks
from datamodules.simulator.config import (
    DEFAULT_PRESET,
    PRESETS,
    SimulatorConfig,
    attraction_probabilities,
    examination_probabilities,
    preset,
)
from datamodules.simulator.io import read_log, write_log
from datamodules.simulator.results import (
    SOURCES,
    SimulatedCatalog,
    SimulatedChunk,
    TrueExamination,
)
from datamodules.simulator.streams import (
    CATALOG_STREAM,
    CHUNK_STREAM,
    INTENT_STREAM,
    USER_STREAM,
    WORDING_STREAM,
)
from datamodules.simulator.vocabulary import (
    AGE_BANDS,
    CATEGORIES,
    COLOR_SURFACES,
    MATERIAL_SURFACES,
    QUERY_PREFIXES,
    QUERY_SUFFIXES,
    REGIONS,
    SIZE_SURFACES,
    CategorySpec,
)

__all__ = [
    "AGE_BANDS",
    "CATALOG_STREAM",
    "CATEGORIES",
    "CHUNK_STREAM",
    "COLOR_SURFACES",
    "DEFAULT_PRESET",
    "INTENT_STREAM",
    "MATERIAL_SURFACES",
    "PRESETS",
    "QUERY_PREFIXES",
    "QUERY_SUFFIXES",
    "REGIONS",
    "SIZE_SURFACES",
    "SOURCES",
    "USER_STREAM",
    "WORDING_STREAM",
    "CategorySpec",
    "SimulatedCatalog",
    "SimulatedChunk",
    "SimulatorConfig",
    "TrueExamination",
    "attraction_probabilities",
    "examination_probabilities",
    "preset",
    "read_log",
    "simulate",
    "simulate_chunks",
    "write_log",
]
