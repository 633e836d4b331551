"""The search-log simulator: schema, determinism, truth kept apart, and the behaviour it models."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from datamodules.simulator import (
    CATEGORIES,
    PRESETS,
    attraction_probabilities,
    examination_probabilities,
    preset,
    read_log,
    simulate,
    simulate_chunks,
    write_log,
)
from datamodules.tables import SearchLog, validate_log

IMPRESSION_SCHEMA = {
    "request_id": pl.Int64,
    "timestamp": pl.Datetime("ms"),
    "user_id": pl.Int64,
    "query": pl.String,
    "product_id": pl.Int64,
    "position": pl.Int32,
    "click": pl.Int8,
    "add_to_cart": pl.Int8,
    "purchase": pl.Int8,
    "randomized": pl.Int8,
    "ranker_position": pl.Int32,
}
PRODUCT_SCHEMA = {
    "product_id": pl.Int64,
    "title": pl.String,
    "description": pl.String,
    "category": pl.String,
    "brand": pl.String,
    "color": pl.String,
    "material": pl.String,
    "size": pl.String,
    "price": pl.Float64,
    "rating": pl.Float64,
    "review_count": pl.Int64,
}
TRUTH_WORDS = ("relevance", "examination", "popularity", "quality", "affinity", "logged")


@pytest.fixture(scope="module")
def ci_log() -> SearchLog:
    return simulate(preset("ci"))


@pytest.fixture(scope="module")
def behaviour_log() -> SearchLog:
    """Large enough for click-rate statistics, still well under a second to generate."""
    return simulate(preset("ci", n_requests=30_000, items_per_request=8, seed=11))


def with_truth(log: SearchLog) -> pl.DataFrame:
    return log.impressions.join(log.truth.relevance, on=["request_id", "product_id"])


def shown_grades(log: SearchLog) -> np.ndarray:
    """True relevance in shown order, one row per request."""
    rows = with_truth(log).sort("request_id", "position")
    return rows["true_relevance"].to_numpy().reshape(-1, rows["position"].max())


def shown_clicks(log: SearchLog) -> np.ndarray:
    rows = log.impressions.sort("request_id", "position")
    return rows["click"].to_numpy().reshape(-1, rows["position"].max())


def row_examination(config, grades: np.ndarray) -> np.ndarray:
    """Each row's examination probability given the items above it, from the models'
    definitions: pbm (1 / p) ** eta; cascade stops at a click; dbn stops after a click that
    satisfies (with dbn_satisfaction * gain) and otherwise reads on with dbn_continuation."""
    if config.click_model == "pbm":
        curve = examination_probabilities(config.position_bias, grades.shape[1])
        return np.broadcast_to(curve, grades.shape)
    attraction = attraction_probabilities(config.click_noise)[grades]
    if config.click_model == "cascade":
        read_on = 1.0 - attraction
    else:
        satisfaction = config.dbn_satisfaction * (2.0**grades - 1.0) / 15.0
        read_on = config.dbn_continuation * (1.0 - attraction * satisfaction)
    examination = np.ones(grades.shape)
    examination[:, 1:] = np.cumprod(read_on[:, :-1], axis=1)
    return examination


def within_binomial_error(observed, expected, n, sigmas: float = 4.0) -> bool:
    """``observed`` click rates within ``sigmas`` binomial standard errors of ``expected``."""
    expected = np.asarray(expected)
    return bool(
        np.all(np.abs(observed - expected) <= sigmas * np.sqrt(expected * (1 - expected) / n))
    )


def swap_ratios(log: SearchLog) -> pl.DataFrame:
    """Joachims' swap estimate of examination(k) / examination(1), per position k.

    The logging ranker's top item is shown at 1 in ordinary requests and at k in requests
    whose position 1 was swapped with k; its click rate at k over its rate at 1 estimates the
    examination ratio, because which requests were swapped is random. Only the logged
    ``randomized`` and ``ranker_position`` columns are read, as with a real log.
    """
    top = log.impressions.filter(pl.col("ranker_position") == 1)
    at_one = top.filter(pl.col("randomized") == 0)["click"].mean()
    moved = top.filter((pl.col("randomized") == 1) & (pl.col("position") > 1))
    return (
        moved.group_by("position")
        .agg(ratio=pl.col("click").mean() / at_one, n=pl.len())
        .sort("position")
    )


# --------------------------------------------------------------------------- configuration


def test_presets_exist_with_the_stated_sizes():
    sizes = {name: (c.n_requests, c.items_per_request) for name, c in PRESETS.items()}
    assert sizes == {
        "tiny": (200, 8),
        "ci": (2_000, 10),
        "default": (20_000, 10),
        "large": (1_000_000, 20),
    }
    assert (PRESETS["default"].n_products, PRESETS["default"].n_users) == (5_000, 2_000)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match="tiny.*ci.*default.*large"):
        preset("huge")


def test_preset_overrides_and_rejects_bad_settings():
    assert preset("tiny", seed=7).seed == 7
    assert preset("tiny", seed=7).n_requests == PRESETS["tiny"].n_requests
    with pytest.raises(ValueError, match="items_per_request"):
        preset("tiny", items_per_request=1)
    with pytest.raises(ValueError, match="intervention"):
        preset("tiny", intervention="shuffle-everything")
    with pytest.raises(ValueError, match="n_products"):
        preset("tiny", n_products=10)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"dbn_continuation": 1.5}, r"simulator\.dbn_continuation must lie in \[0, 1\], got 1\.5"),
        ({"dbn_satisfaction": -0.1}, r"simulator\.dbn_satisfaction must lie in \[0, 1\]"),
        ({"click_model": "probit"}, r"unknown click_model 'probit'; valid: pbm, cascade, dbn"),
        ({"intervention_depth": 1}, r"intervention_depth must lie between 2 and .* \(8\), got 1"),
        ({"intervention_depth": 9}, r"intervention_depth must lie between 2 and .* \(8\), got 9"),
    ],
)
def test_click_model_and_depth_out_of_range_are_one_line_errors(override, message):
    with pytest.raises(ValueError, match=message) as error:
        preset("tiny", **{"click_model": "dbn", **override})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--set", "click_model=dbn", "--set", "dbn_continuation=1.5"],
        ["bench", "--set", "simulator.click_model=dbn", "--set", "simulator.dbn_continuation=1.5"],
    ],
)
def test_the_command_line_refuses_a_bad_click_model_before_any_data_work(tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([*command, "--preset", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "rankbench: error: simulator.dbn_continuation must lie in [0, 1], got 1.5"
    assert not out.exists()


def test_tiny_is_generated_well_under_a_second():
    simulate(preset("tiny"))  # warm up imports and caches
    started = time.perf_counter()
    simulate(preset("tiny", seed=1))
    assert time.perf_counter() - started < 1.0


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("name", ["tiny", "ci"])
def test_output_passes_validate_log(name):
    log = simulate(preset(name))
    validated = validate_log(log)
    assert validated.impressions.equals(log.impressions)
    assert validated.behaviours == ("click", "add_to_cart", "purchase")
    assert log.sources["products"] == "simulator:products"


def test_tables_have_the_exact_schema(ci_log):
    config = PRESETS["ci"]
    assert dict(ci_log.impressions.schema) == IMPRESSION_SCHEMA
    assert dict(ci_log.products.schema) == PRODUCT_SCHEMA
    assert ci_log.users.columns == ["user_id", "age_band", "region"]
    assert ci_log.users.schema["user_id"] == pl.Int64
    assert ci_log.impressions.height == config.n_requests * config.items_per_request
    assert ci_log.products.height == config.n_products
    assert dict(ci_log.truth.relevance.schema) == {
        "request_id": pl.Int64,
        "product_id": pl.Int64,
        "true_relevance": pl.Int8,
    }
    assert dict(ci_log.truth.examination.schema) == {
        "position": pl.Int32,
        "examination": pl.Float64,
    }


def test_rows_are_sorted_and_timestamps_increase_over_a_month(ci_log):
    imp = ci_log.impressions
    assert imp.equals(imp.sort("request_id", "position"))
    per_request = imp.group_by("request_id").agg(pl.col("timestamp").first()).sort("request_id")
    assert per_request["timestamp"].diff().drop_nulls().dt.total_milliseconds().min() > 0
    span = per_request["timestamp"].max() - per_request["timestamp"].min()
    assert 25 <= span.days <= 30
    assert (
        imp.group_by("request_id").agg(pl.col("product_id").n_unique())["product_id"].min()
        == PRESETS["ci"].items_per_request
    )


def test_size_is_null_exactly_where_sizes_do_not_apply(ci_log):
    sizeless = [c.name for c in CATEGORIES if not c.sizes]
    products = ci_log.products
    assert (
        products.filter(pl.col("category").is_in(sizeless))["size"].null_count()
        == products.filter(pl.col("category").is_in(sizeless)).height
    )
    assert products.filter(~pl.col("category").is_in(sizeless))["size"].null_count() == 0
    assert sum(products.drop("size").null_count().row(0)) == 0
    assert products["rating"].is_between(1, 5).all()


# --------------------------------------------------------------------------- determinism


def test_same_config_gives_identical_tables_and_another_seed_does_not():
    first, second = simulate(preset("tiny")), simulate(preset("tiny"))
    for table in ("products", "users", "impressions"):
        assert getattr(first, table).equals(getattr(second, table)), table
    assert first.truth.relevance.equals(second.truth.relevance)
    other = simulate(preset("tiny", seed=1))
    assert not first.impressions.equals(other.impressions)
    assert not first.products.equals(other.products)


def test_written_chunks_read_back_as_the_in_memory_log(tmp_path):
    config = preset("tiny", chunk_requests=37)  # 6 chunks, the last one short
    summary = write_log(config, tmp_path, progress=False)
    assert summary["impressions"] == config.n_requests * config.items_per_request
    assert summary["chunks"] == 6
    assert len(list((tmp_path / "impressions").glob("part-*.parquet"))) == 6
    assert not list(tmp_path.rglob(".*tmp*"))

    expected, loaded = simulate(config), read_log(tmp_path)
    assert loaded.impressions.equals(expected.impressions)
    assert loaded.products.equals(expected.products)
    assert loaded.users.equals(expected.users)
    assert loaded.truth.relevance.equals(expected.truth.relevance)
    assert loaded.truth.examination.equals(expected.truth.examination)

    write_log(preset("tiny", chunk_requests=100), tmp_path, progress=False)  # fewer chunks
    assert len(list((tmp_path / "impressions").glob("part-*.parquet"))) == 2
    assert read_log(tmp_path).impressions.height == expected.impressions.height


def test_chunks_come_one_by_one_after_the_catalog():
    config = preset("tiny", chunk_requests=50)
    catalog, chunks = simulate_chunks(config)
    assert catalog.products.height == config.n_products
    first_ids = [chunk.first_request_id for chunk in chunks]
    assert first_ids == [1, 51, 101, 151]


# --------------------------------------------------------------------------- truth apart


def test_truth_is_kept_apart_and_covers_every_impression(ci_log):
    for table in (ci_log.impressions, ci_log.products, ci_log.users):
        leaked = [c for c in table.columns if any(w in c for w in TRUTH_WORDS)]
        assert leaked == []
    relevance = ci_log.truth.relevance
    assert relevance.height == ci_log.impressions.height
    assert relevance.select("request_id", "product_id").equals(
        ci_log.impressions.select("request_id", "product_id")
    )
    assert relevance["true_relevance"].is_between(0, 4).all()
    assert set(relevance["true_relevance"].unique()) == {0, 1, 2, 3, 4}


def test_examination_truth_follows_the_position_bias():
    log = simulate(preset("tiny", position_bias=1.5))
    expected = (1.0 / np.arange(1, 9)) ** 1.5
    np.testing.assert_allclose(log.truth.examination["examination"].to_numpy(), expected)
    np.testing.assert_allclose(examination_probabilities(0.0, 4), np.ones(4))


@pytest.mark.parametrize("kind", ["rand_pair", "rand_top"])
def test_impressions_record_the_randomization_and_the_ranker_order(kind):
    log = simulate(preset("tiny", intervention=kind, intervention_rate=0.3))
    k = PRESETS["tiny"].items_per_request
    imp = log.impressions
    flags = imp.group_by("request_id").agg(
        pl.col("randomized").n_unique(), pl.col("randomized").first().alias("flag")
    )
    assert flags["randomized"].max() == 1  # one flag for all rows of a request
    per_request = (
        imp.filter(pl.col("randomized") == 1)
        .group_by("request_id")
        .agg(pl.col("ranker_position").sort())
    )
    assert per_request.height == flags["flag"].sum()
    assert 30 <= per_request.height <= 90
    assert all(p.to_list() == list(range(1, k + 1)) for p in per_request["ranker_position"])
    plain = imp.filter(pl.col("randomized") == 0)
    assert plain.filter(pl.col("ranker_position") != pl.col("position")).height == 0
    moved = imp.filter(pl.col("position") != pl.col("ranker_position"))
    if kind == "rand_pair":  # only positions 1 and one partner moved
        assert moved.group_by("request_id").len()["len"].to_list() == [2] * per_request.height
        assert moved.filter(pl.col("position") == 1).height == per_request.height
    else:  # a shuffle moves most items
        assert moved.height > 0.7 * per_request.height * k


@pytest.mark.parametrize("kind", ["rand_pair", "rand_top"])
def test_intervention_depth_moves_only_the_top_positions(kind):
    depth, settings = 3, {"n_requests": 2_000, "intervention": kind, "seed": 6}
    log = simulate(
        preset("tiny", intervention_rate=0.5, intervention_depth=depth, **settings)
    ).impressions
    moved = log.filter(pl.col("position") != pl.col("ranker_position"))
    assert moved["position"].max() == depth and moved["ranker_position"].max() == depth
    assert set(moved["position"]) == set(range(1, depth + 1))
    randomized = log.filter(pl.col("randomized") == 1)["request_id"].n_unique()
    if kind == "rand_pair":  # position 1 and one partner in 2..depth
        assert moved.height == 2 * randomized
    else:  # a shuffle of 3 leaves the order as it was 1 time in 6
        assert 0.75 * randomized < moved["request_id"].n_unique() < 0.9 * randomized
    # ranker_position is where the logging ranker put the item: without randomization the
    # same seed shows the same lists in the ranker's order.
    ranked = simulate(preset("tiny", intervention_rate=0.0, **settings)).impressions
    placed = log.join(ranked, on=["request_id", "product_id"], suffix="_ranked")
    assert placed.height == log.height
    assert placed.filter(pl.col("ranker_position") != pl.col("position_ranked")).height == 0


def test_full_depth_randomizes_as_without_a_depth():
    k = PRESETS["tiny"].items_per_request
    for kind in ("rand_pair", "rand_top"):
        whole = simulate(preset("tiny", intervention=kind, intervention_depth=k)).impressions
        assert whole.equals(simulate(preset("tiny", intervention=kind)).impressions)


def test_randomized_share_follows_the_intervention_rate():
    rates = {}
    for rate in (0.0, 0.25, 1.0):
        imp = simulate(preset("tiny", n_requests=2_000, intervention_rate=rate)).impressions
        rates[rate] = imp["randomized"].mean()
    assert rates[0.0] == 0.0 and rates[1.0] == 1.0
    assert 0.2 < rates[0.25] < 0.3


# --------------------------------------------------------------------------- behaviour


def test_funnel_is_nested(ci_log):
    imp = ci_log.impressions
    assert imp.filter(pl.col("purchase") > pl.col("add_to_cart")).height == 0
    assert imp.filter(pl.col("add_to_cart") > pl.col("click")).height == 0
    assert imp["purchase"].sum() > 0


def test_clicks_rise_with_true_relevance(behaviour_log):
    rates = dict(
        with_truth(behaviour_log).group_by("true_relevance").agg(pl.col("click").mean()).iter_rows()
    )
    assert rates[4] > rates[3] > rates[2] > rates[1] > rates[0]
    assert rates[4] > 5 * rates[0]


def test_click_rate_falls_with_position_without_intervention(behaviour_log):
    plain = behaviour_log.impressions.filter(pl.col("randomized") == 0)
    ctr = plain.group_by("position").agg(pl.col("click").mean()).sort("position")["click"]
    assert all(ctr[i] > ctr[i + 2] for i in range(len(ctr) - 2))
    assert ctr[0] > 3 * ctr[len(ctr) - 1]


def test_stronger_position_bias_gives_a_steeper_falloff():
    def falloff(eta: float) -> float:
        log = simulate(preset("ci", n_requests=10_000, position_bias=eta, seed=3))
        ctr = log.impressions.group_by("position").agg(pl.col("click").mean()).sort("position")
        return ctr["click"][4] / ctr["click"][0]

    weak, normal, strong = falloff(0.5), falloff(1.0), falloff(2.0)
    assert weak > normal > strong


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_swap_interventions_recover_the_examination_curve(eta):
    config = preset(
        "ci",
        n_requests=40_000,
        items_per_request=5,
        intervention_rate=0.5,
        position_bias=eta,
        seed=5,
    )
    ratios = swap_ratios(simulate(config))
    expected = examination_probabilities(eta, 5)[1:]
    np.testing.assert_allclose(ratios["ratio"].to_numpy(), expected, atol=0.08)
    if eta == 0.0:  # flat within noise
        assert ratios["ratio"].max() - ratios["ratio"].min() < 0.12


@pytest.mark.parametrize("click_model", ["pbm", "cascade", "dbn"])
def test_clicks_per_position_are_examination_times_attraction(click_model):
    config = preset("tiny", n_requests=20_000, click_model=click_model, seed=2)
    log = simulate(config)
    grades = shown_grades(log)
    examination = row_examination(config, grades)
    truth = log.truth.examination["examination"].to_numpy()
    assert truth[0] == 1.0  # relative to position 1, as estimated propensities are
    np.testing.assert_allclose(truth, examination.mean(axis=0), rtol=1e-12)
    # Row by row P(click) = examination given the items above x attraction: every
    # position's click rate lies within 4 binomial standard errors of the mean of that.
    expected = (examination * attraction_probabilities(config.click_noise)[grades]).mean(axis=0)
    assert within_binomial_error(shown_clicks(log).mean(axis=0), expected, len(grades))


def test_cascade_clicks_at_most_once_per_request_and_dbn_reads_on():
    clicks = {
        model: shown_clicks(simulate(preset("tiny", n_requests=2_000, click_model=model))).sum(1)
        for model in ("cascade", "dbn")
    }
    assert clicks["cascade"].max() == 1 and clicks["cascade"].mean() > 0.2
    assert clicks["dbn"].max() > 1


def test_dbn_that_never_stops_clicks_like_pbm_without_position_bias():
    settings = {"n_requests": 20_000, "seed": 4}
    dbn = simulate(
        preset("tiny", click_model="dbn", dbn_continuation=1.0, dbn_satisfaction=0.0, **settings)
    )
    pbm = simulate(preset("tiny", position_bias=0.0, **settings))
    shown = ["request_id", "query", "product_id", "position", "ranker_position"]
    assert dbn.impressions.select(shown).equals(pbm.impressions.select(shown))
    grades = shown_grades(pbm)
    expected = attraction_probabilities(PRESETS["tiny"].click_noise)[grades].mean(axis=0)
    for log in (dbn, pbm):
        np.testing.assert_array_equal(log.truth.examination["examination"], np.ones(8))
        assert within_binomial_error(shown_clicks(log).mean(axis=0), expected, len(grades))


def test_the_truth_under_a_sequential_model_is_the_mean_over_every_chunk(tmp_path):
    config = preset("tiny", click_model="cascade", chunk_requests=37)
    catalog, chunks = simulate_chunks(config)
    with pytest.raises(RuntimeError, match="after the last chunk"):
        catalog.true_examination.table()
    list(chunks)
    whole = simulate(config)
    assert catalog.examination.equals(whole.truth.examination)
    write_log(config, tmp_path, progress=False)
    assert read_log(tmp_path).truth.examination.equals(whole.truth.examination)


def test_one_query_means_different_things_to_different_users(behaviour_log):
    rows = with_truth(behaviour_log)
    seen_by_many = (
        rows.group_by("query", "product_id")
        .agg(users=pl.col("user_id").n_unique(), grades=pl.col("true_relevance").n_unique())
        .filter(pl.col("users") >= 2)
    )
    share_ambiguous = (seen_by_many["grades"] > 1).mean()
    assert seen_by_many.height > 1_000
    assert share_ambiguous > 0.2


def test_queries_and_titles_often_name_the_category_differently(behaviour_log):
    surfaces = {c.name: c.surfaces for c in CATEGORIES}
    rows = (
        with_truth(behaviour_log)
        .filter(pl.col("true_relevance") >= 1)
        .join(behaviour_log.products.select("product_id", "title", "category"), on="product_id")
        .sample(5_000, seed=0)
    )
    different = total = 0
    for query, title, category in rows.select("query", "title", "category").iter_rows():
        named = [s for s in surfaces[category] if s in query]
        if named:
            total += 1
            different += max(named, key=len) not in title.lower()
    assert total > 4_000
    assert different / total > 0.2


def test_users_show_only_weak_observables(ci_log):
    users = ci_log.users
    assert users["user_id"].is_unique().all()
    assert set(users["age_band"].unique()) <= {"18-24", "25-34", "35-44", "45-54", "55+"}
    assert users["region"].n_unique() > 1
