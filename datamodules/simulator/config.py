"""What determines a simulated log: ``SimulatorConfig``, the named presets, and the true
examination (position-based model) and attraction probabilities of the click models."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from datamodules.click_models import attraction, check_click_model, pbm_examination
from datamodules.settings import typed_settings
from datamodules.simulator.vocabulary import CATEGORIES

_MAX_CANDIDATES = 64  # column index packs into 6 bits of the ranking sort key
MAX_RELEVANCE = 4  # true relevance grades run 0..4


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that determines a simulated log. Same config => identical tables."""

    n_requests: int
    items_per_request: int
    n_products: int
    n_users: int
    n_query_intents: int  # distinct intents (capped at what the catalog offers, ~4k)
    # How a user reads the list (datamodules/click_models.py): "pbm", the position-based
    # model, looks at position p with probability (1 / p) ** position_bias whatever is shown;
    # "cascade" (Craswell et al., WSDM 2008) reads top-down and stops at the first click;
    # "dbn" (Chapelle & Zhang, WWW 2009) reads top-down, stops after a click that satisfies
    # the user and otherwise reads on with probability dbn_continuation.
    click_model: str = "pbm"
    position_bias: float = 1.0  # pbm's eta in examination(p) = (1 / p) ** eta
    dbn_continuation: float = 0.9  # dbn's gamma: chance of reading on when not satisfied
    dbn_satisfaction: float = 0.6  # dbn: a click satisfies with this * gain(relevance)
    intervention_rate: float = 0.1  # share of requests whose shown list is randomized
    intervention: str = "rand_pair"  # "rand_pair": swap 1 <-> k; "rand_top": shuffle
    intervention_depth: int | None = None  # randomize positions 1..depth only; None: all
    logging_noise: float = 1.0  # std of the logging ranker's noise on true relevance
    popularity_weight: float = 0.5  # weight of popularity (z-score) in the logging ranker
    click_noise: float = 0.05  # epsilon: attraction of an irrelevant item, every click model
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
                raise ValueError(f"simulator.{name} must be >= 1, got {getattr(self, name)}")
        if self.items_per_request < 2:
            raise ValueError("simulator.items_per_request must be >= 2")
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
                raise ValueError(f"simulator.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.intent_match_share + self.off_category_share > 1.0:
            raise ValueError("intent_match_share + off_category_share must be <= 1")
        if self.position_bias < 0 or self.logging_noise < 0 or self.days <= 0:
            raise ValueError("position_bias and logging_noise must be >= 0, days > 0")
        depth = self.intervention_depth
        if depth is not None and not 2 <= depth <= self.items_per_request:
            raise ValueError(
                f"simulator.intervention_depth must lie between 2 and items_per_request "
                f"({self.items_per_request}), got {depth}"
            )
        try:
            check_click_model(
                self.click_model,
                self.click_noise,
                self.position_bias,
                self.dbn_continuation,
                self.dbn_satisfaction,
            )
        except ValueError as error:
            # Its messages start with the field's name; name it as a setting is written.
            message = str(error)
            raise ValueError(
                message if message.startswith("unknown") else f"simulator.{message}"
            ) from None

    @property
    def n_candidates(self) -> int:
        return math.ceil(self.candidates_per_item * self.items_per_request)

    @property
    def randomized_positions(self) -> int:
        """How many top positions a randomized request permutes."""
        return (
            self.items_per_request if self.intervention_depth is None else self.intervention_depth
        )

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_requests / self.chunk_requests)


DEFAULT_PRESET = "default"  # the preset a run uses unless it names one

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
    """A named configuration, with any field overridden (``preset("ci", seed=3)``); an
    unknown or mistyped override ends in one line naming ``simulator.<field>``."""
    if name not in PRESETS:
        raise ValueError(f"unknown simulator preset {name!r}; valid: {', '.join(PRESETS)}")
    base = {f.name: getattr(PRESETS[name], f.name) for f in fields(SimulatorConfig)}
    return typed_settings(SimulatorConfig, {**base, **overrides}, "simulator")


def examination_probabilities(position_bias: float, n_positions: int) -> np.ndarray:
    """True probability under ``pbm`` that position p (1-based) is looked at:
    (1 / p) ** position_bias."""
    return pbm_examination(position_bias, n_positions)


def attraction_probabilities(click_noise: float) -> np.ndarray:
    """Probability that an examined item of relevance 0..4 is clicked, in every click model."""
    return attraction(np.arange(MAX_RELEVANCE + 1), MAX_RELEVANCE, click_noise)
