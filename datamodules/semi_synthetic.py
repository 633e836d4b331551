"""Semi-synthetic clicks: a judged dataset turned into a click log with simulated position bias.

The standard evaluation of unbiased learning to rank (Joachims, Swaminathan & Schnabel,
"Unbiased learning-to-rank with biased feedback", WSDM 2017; Ai et al., "Unbiased learning
to rank with unbiased propensity estimation", SIGIR 2018): real features and real human
relevance, clicks simulated from the human grades under a known click model. Set
``dataset_options.simulate_clicks`` (a mapping of :class:`SimulateClicks`, or ``true`` for
its defaults) on LETOR, ESCI or WANDS, and :func:`simulate_click_log` replaces the judged
pairs by

- ``sessions_per_query`` requests per judged query (``<query id>#<session>``), each showing
  the top ``top_k`` of the query's judged items as a weak logging ranker orders them, with
  fresh noise per session so that an item's position varies: ``noisy_grades``, the human
  grade plus Gaussian noise of std ``logging_noise`` (the simulator's logging ranker, in the
  dataset's grade units), or ``feature``, a numeric column standardised within the query
  plus the same noise (``logging_noise: 0`` for a fixed production ranker, as in the papers);
- a share ``intervention_rate`` of the sessions shown shuffled, recording ``randomized`` and
  ``ranker_position`` for the intervention estimator of position bias;
- clicks from :func:`datamodules.click_models.simulate_clicks` (``pbm``, ``cascade`` or
  ``dbn``) on the human grades, with the maximum judgment of the data as the best grade.
  ``gain: exponential`` makes an examined item's attraction grow as ``2^grade - 1`` (LETOR
  and WANDS, whose judgments are ordinal grades); ``gain: linear`` makes it proportional to
  the judgment (ESCI, whose judgments are the gains E 1.0, S 0.1, C 0.01, I 0 already);
- a :class:`~datamodules.tables.Truth`: the human grade of every shown row as
  ``true_relevance`` and the mean true examination of each position, so the ``true``
  columns of every table score models against the human grades (with the metrics' gain:
  ``2^g - 1`` by default, linear for ESCI by its dataset default).

The click log is labelled like any other (labels derived from the clicks); every session
takes the split its query has (the dataset's own, or drawn by query), so test queries are
unseen in training. Every draw comes from ``seed``: the same settings give the same tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import polars as pl

from datamodules.click_models import CLICK_MODELS, check_click_model, simulate_clicks
from datamodules.judged import JUDGMENT
from datamodules.settings import typed_settings
from datamodules.simulator.config import SimulatorConfig
from datamodules.tables import LogValidationError, SearchLog, Truth

OPTION = "dataset_options.simulate_clicks"
_SIMULATOR = {f.name: f.default for f in fields(SimulatorConfig)}
CHUNK_ROWS = 1 << 22  # (session, item) pairs ranked at once: bounds memory on MSLR-size data


@dataclass(frozen=True)
class SimulateClicks:
    """``dataset_options.simulate_clicks``; the click defaults are the simulator's."""

    sessions_per_query: int = 10  # requests simulated per judged query
    top_k: int = 10  # items shown per request (fewer where a query has fewer)
    logging: Literal["noisy_grades", "feature"] = "noisy_grades"
    logging_noise: float = _SIMULATOR["logging_noise"]  # std of the logging score's noise
    logging_feature: str | None = None  # the numeric column ``logging: feature`` ranks by
    click_model: str = _SIMULATOR["click_model"]  # pbm | cascade | dbn
    position_bias: float = _SIMULATOR["position_bias"]  # eta: pbm examines p at (1 / p)^eta
    click_noise: float = _SIMULATOR["click_noise"]  # attraction of an irrelevant item
    dbn_continuation: float = _SIMULATOR["dbn_continuation"]
    dbn_satisfaction: float = _SIMULATOR["dbn_satisfaction"]
    intervention_rate: float = 0.0  # share of sessions shown shuffled
    gain: Literal["exponential", "linear"] | None = None  # None: the dataset's
    seed: int = 0

    def __post_init__(self):
        if self.click_model not in CLICK_MODELS:
            raise ValueError(
                f"simulate_clicks.click_model must be one of {', '.join(CLICK_MODELS)}, "
                f"not {self.click_model!r}"
            )
        parameters = ("click_noise", "position_bias", "dbn_continuation", "dbn_satisfaction")
        try:  # the click models' own ranges; their messages start with the parameter's name
            check_click_model(self.click_model, *(getattr(self, name) for name in parameters))
        except ValueError as error:
            raise ValueError(f"simulate_clicks.{error}") from None
        for name in ("sessions_per_query", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"simulate_clicks.{name} must be >= 1, got {getattr(self, name)}")
        rate, noise = self.intervention_rate, self.logging_noise
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"simulate_clicks.intervention_rate must lie in [0, 1], got {rate}")
        if noise < 0:
            raise ValueError(f"simulate_clicks.logging_noise must be >= 0, got {noise}")
        if (self.logging == "feature") != (self.logging_feature is not None):
            raise ValueError(
                "simulate_clicks.logging_feature names the column of logging: feature, and only "
                f"then (logging is {self.logging}, logging_feature {self.logging_feature!r})"
            )


def simulation_settings(
    value, dataset: str, features: str, features_hint: str, gain: str
) -> SimulateClicks | None:
    """The typed option (None when off), checked before any data is read: ``features`` is a
    regular expression of the dataset's numeric columns (``features_hint`` says them to the
    user), ``gain`` the dataset's mapping of judgments to attraction."""
    if value is None or value is False:
        return None
    settings = typed_settings(SimulateClicks, {} if value is True else value, OPTION)
    name = settings.logging_feature
    if name is not None and not (features and re.fullmatch(features, name)):
        raise ValueError(
            f"{OPTION}.logging_feature: {dataset} has no numeric feature {name!r}; "
            f"its features: {features_hint}"
        )
    return settings if settings.gain else replace(settings, gain=gain)


def simulation_note(settings: SimulateClicks) -> str:
    """One line for the tables' notes: what the click log is."""
    ranker = (
        f"feature {settings.logging_feature}" if settings.logging == "feature" else "noisy grades"
    )
    model = {
        "pbm": f"pbm clicks (position bias {settings.position_bias:g})",
        "cascade": "cascade clicks",
        "dbn": f"dbn clicks (continuation {settings.dbn_continuation:g}, satisfaction "
        f"{settings.dbn_satisfaction:g})",
    }[settings.click_model]
    return (
        f"semi-synthetic clicks: {settings.sessions_per_query} sessions per judged query, the "
        f"top {settings.top_k} by {ranker} (noise {settings.logging_noise:g}) shown, {model}; "
        "the true columns are the dataset's grades; every session keeps its query's split"
    )


def simulate_click_log(
    judged: SearchLog, assignment: pl.DataFrame, settings: SimulateClicks
) -> tuple[SearchLog, pl.DataFrame]:
    """The click log ``settings`` make of a validated judged log, and its ``request_id ->
    split``: each session in the part ``assignment`` gave its query."""
    pairs = judged.impressions.sort("request_id", "position")
    twice = pairs.select(pl.struct("request_id", "product_id").is_duplicated().sum()).item()
    if twice:  # a session would show the product twice, and its truth would be ambiguous
        raise LogValidationError(
            judged.source("impressions"),
            "product_id",
            "a product judged twice for one query; semi-synthetic clicks need one grade each",
            twice,
        )
    queries = pairs.group_by("request_id", maintain_order=True).len()
    sizes = queries["len"].to_numpy().astype(np.int64)
    grades = pairs[JUDGMENT].to_numpy()
    noise_rng, shuffle_rng, click_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(3)
    )
    signal = _logging_signal(pairs, judged.products, settings)
    shown = _logged_lists(signal, sizes, settings, noise_rng)
    shown, ranker_position, randomized = _intervene(shown, settings, shuffle_rng)

    valid = shown >= 0
    max_grade = float(grades.max()) or 1.0  # all irrelevant: any best grade gives gain 0
    shown_grades = np.where(valid, grades[np.maximum(shown, 0)], 0.0)
    if settings.gain == "linear":  # 2^g' - 1 = judgment / max with a best grade g' of 1
        shown_grades, max_grade = np.log2(1.0 + shown_grades / max_grade), 1.0
    clicks, examination = simulate_clicks(
        click_rng,
        shown_grades,
        max_grade,
        settings.click_model,
        settings.click_noise,
        settings.position_bias,
        settings.dbn_continuation,
        settings.dbn_satisfaction,
    )

    session, slot = np.nonzero(valid)  # row-major: by session, then position
    item = shown[session, slot]
    per_query = settings.sessions_per_query
    sessions = pl.DataFrame(
        {
            "_query": queries["request_id"].gather(np.arange(len(shown)) // per_query),
            "_session": np.arange(len(shown)) % per_query + 1,
        }
    ).select(
        pl.format("{}#{}", pl.col("_query").cast(pl.String), "_session").alias("request_id"),
        "_query",
    )
    request_id = sessions["request_id"].gather(session)
    position = pl.Series("position", slot + 1, dtype=pl.Int32)
    impressions = pl.DataFrame(
        [
            request_id,
            pairs["query"].gather(item),
            pairs["product_id"].gather(item),
            position,
            pl.Series("click", clicks[valid], dtype=pl.Int8),
        ]
    )
    if settings.intervention_rate > 0:
        impressions = impressions.with_columns(
            randomized=pl.Series(randomized[session], dtype=pl.Int8),
            ranker_position=pl.Series(ranker_position[valid], dtype=pl.Int32),
        )
    relevance = pl.DataFrame(
        [request_id, pairs["product_id"].gather(item), pl.Series("true_relevance", grades[item])]
    )
    # Each position's mean in numpy: a polars group_by sums floats in an order that varies
    # with its threads, and the truth must be the same bits on every run.
    shown = position.to_numpy()
    totals = np.bincount(shown, weights=examination[valid])
    counts = np.bincount(shown)
    at = np.flatnonzero(counts)
    curve = pl.DataFrame(
        [
            pl.Series("position", at, dtype=position.dtype),
            pl.Series("examination", totals[at] / counts[at], dtype=pl.Float64),
        ]
    )
    split = sessions.join(
        assignment.rename({"request_id": "_query"}), on="_query", how="left", maintain_order="left"
    ).select("request_id", "split")
    log = SearchLog(
        judged.products, impressions, judged.users, Truth(relevance, curve), dict(judged.sources)
    )
    return log, split


def _logging_signal(
    pairs: pl.DataFrame, products: pl.DataFrame, settings: SimulateClicks
) -> np.ndarray:
    """What the logging ranker sees of each judged pair, before its noise: the grade, or the
    feature standardised within the query (a missing value one below the query's lowest)."""
    if settings.logging == "noisy_grades":
        return pairs[JUDGMENT].to_numpy()
    name = settings.logging_feature
    if name not in products.columns or not products.schema[name].is_numeric():
        numeric = [c for c, t in products.schema.items() if t.is_numeric()]
        found = f"{numeric[0]} .. {numeric[-1]}" if numeric else "none"
        raise ValueError(f"{OPTION}.logging_feature: no numeric column {name!r} (found: {found})")
    value = pl.col(name).cast(pl.Float64).fill_nan(None)
    spread = value.std(ddof=0).over("request_id")
    centred = value - value.mean().over("request_id")
    z = pl.when(spread > 0).then(centred / spread).otherwise(centred)
    signal = pairs.select("request_id", "product_id").join(
        products.select("product_id", name), on="product_id", how="left", maintain_order="left"
    )
    z = signal.select("request_id", z.alias("z"))
    return (
        z.select(pl.col("z").fill_null(pl.col("z").min().over("request_id") - 1.0))["z"]
        .fill_null(0.0)
        .to_numpy()
    )


def _logged_lists(
    signal: np.ndarray, sizes: np.ndarray, settings: SimulateClicks, rng: np.random.Generator
) -> np.ndarray:
    """``[queries * sessions, top_k]`` row numbers of the pairs each session shows, best
    first; -1 past the end of a shorter list. Ties fall to the file order."""
    per_query, k = settings.sessions_per_query, settings.top_k
    first_item = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    shown = np.full((len(sizes) * per_query, k), -1, dtype=np.int64)
    # The queries of one length make one [sessions, length] matrix, sorted row by row (a
    # sort of all sessions' rows at once is several times slower); chunks bound memory.
    for length in np.unique(sizes):
        same = np.flatnonzero(sizes == length)
        step = max(1, CHUNK_ROWS // (int(length) * per_query))
        for q in (same[i : i + step] for i in range(0, len(same), step)):
            item = np.repeat(first_item[q], per_query)[:, None] + np.arange(length)
            score = signal[item] + settings.logging_noise * rng.standard_normal(item.shape)
            best = np.argsort(-score, axis=1, kind="stable")[:, :k]
            session = (q[:, None] * per_query + np.arange(per_query)).ravel()
            shown[session, : best.shape[1]] = np.take_along_axis(item, best, axis=1)
    return shown


def _intervene(
    shown: np.ndarray, settings: SimulateClicks, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle the shown list of a share ``intervention_rate`` of the sessions; returns the
    lists, the logging ranker's position of each shown item and which sessions were shuffled."""
    n, k = shown.shape
    ranker_position = np.tile(np.arange(1, k + 1, dtype=np.int32), (n, 1))
    randomized = rng.random(n) < settings.intervention_rate
    keys = rng.random((int(randomized.sum()), k))
    keys[shown[randomized] < 0] = 2.0  # the empty slots of a short list stay at its end
    permutation = np.argsort(keys, axis=1)
    shown = shown.copy()
    shown[randomized] = np.take_along_axis(shown[randomized], permutation, axis=1)
    ranker_position[randomized] = permutation + 1
    return shown, ranker_position, randomized
