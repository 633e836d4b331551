"""Semi-synthetic clicks on judged datasets: the click log, its truth, its split, the option."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from benchmarks.config import load_spec
from datamodules import SearchLogDataModule
from datamodules.click_models import attraction
from datamodules.judged import JUDGMENT, judged_assignment, validate_judged_log
from datamodules.letor import read_letor
from datamodules.semi_synthetic import SimulateClicks, simulate_click_log
from datamodules.sources import LetorSource, make_source
from datamodules.splits import SplitConfig
from datamodules.tables import LogValidationError, SearchLog
from datamodules.wands import read_wands
from labeling.propensity import estimate_propensities
from tests.datamodules.test_letor import write_letor
from tests.datamodules.test_wands import write_wands

QUERIES = 60  # write_letor's default: 40 train, 10 vali, 10 test queries of 8 documents
DOCS = 8


@pytest.fixture(scope="module")
def letor(tmp_path_factory) -> Path:
    return write_letor(tmp_path_factory.mktemp("semi") / "letor")


@pytest.fixture(scope="module")
def judged(letor):
    log = validate_judged_log(read_letor(letor))
    return log, judged_assignment(log.impressions, SplitConfig())


def clicks(judged, **settings):
    log, assignment = judged
    return simulate_click_log(log, assignment, SimulateClicks(**settings))


def grade_of(judged) -> pl.DataFrame:
    return judged[0].impressions.select("product_id", pl.col(JUDGMENT).alias("grade"))


def test_sessions_show_the_top_k_and_the_truth_is_the_human_grade(judged):
    log, split = clicks(judged, sessions_per_query=4, top_k=5)
    impressions = log.impressions
    assert JUDGMENT not in impressions.columns and "click" in impressions.columns
    sizes = impressions.group_by("request_id").agg(pl.len(), pl.col("position").sort())
    assert sizes.height == 4 * QUERIES
    assert (sizes["len"] == 5).all()
    assert all(p == [1, 2, 3, 4, 5] for p in sizes["position"].to_list())
    # Each session shows its own query's documents, five distinct of eight.
    query = impressions["request_id"].str.split("#").list.first()
    owner = judged[0].impressions.select("product_id", pl.col("request_id").alias("_owner"))
    shown = impressions.with_columns(query=query).join(owner, on="product_id")
    assert (shown["query"] == shown["_owner"]).all()
    assert impressions.select(pl.struct("request_id", "product_id").is_unique().all()).item()
    truth = log.truth.relevance.join(grade_of(judged), on="product_id")
    assert truth.height == impressions.height
    assert (truth["true_relevance"] == truth["grade"]).all()
    assert log.truth.examination["position"].to_list() == [1, 2, 3, 4, 5]
    assert sorted(split["request_id"].to_list()) == sorted(sizes["request_id"].to_list())
    # A query shorter than top_k shows all its documents.
    longer, _ = clicks(judged, sessions_per_query=2, top_k=20)
    assert (longer.impressions.group_by("request_id").len()["len"] == DOCS).all()


def test_positions_vary_across_sessions_and_a_noiseless_feature_ranker_is_fixed(judged):
    noisy, _ = clicks(judged, sessions_per_query=10)
    first = noisy.impressions.filter(pl.col("position") == 1)
    per_query = first.group_by(pl.col("request_id").str.split("#").list.first()).agg(
        pl.col("product_id").n_unique()
    )
    assert per_query["product_id"].mean() > 1.5  # the noise is redrawn per session
    fixed, _ = clicks(judged, logging="feature", logging_feature="f1", logging_noise=0.0)
    f1 = judged[0].products.select("product_id", "f1")
    rows = fixed.impressions.join(f1, on="product_id", maintain_order="left")
    by_f1 = rows.with_columns(best=pl.col("f1").rank("ordinal", descending=True).over("request_id"))
    assert (by_f1["best"] == by_f1["position"]).all()


@pytest.mark.parametrize("model", ["pbm", "cascade", "dbn"])
def test_clicks_only_where_the_click_model_allows(judged, model):
    log, _ = clicks(
        judged, click_model=model, click_noise=0.0, dbn_continuation=1.0, dbn_satisfaction=1.0
    )
    rows = log.impressions.join(grade_of(judged), on="product_id", maintain_order="left")
    assert rows["click"].sum() > 100
    assert rows.filter(pl.col("grade") == 0)["click"].sum() == 0  # no noise, no attraction
    per_request = rows.group_by("request_id").agg(
        pl.col("click").sum().alias("n"),
        # The first position after a click on a top-grade (surely satisfying) item.
        pl.col("position").filter((pl.col("click") == 1) & (pl.col("grade") == 4)).min().alias("s"),
        pl.col("position").filter(pl.col("click") == 1).max().alias("last"),
    )
    if model == "cascade":
        assert per_request["n"].max() == 1
    if model == "dbn":  # satisfaction 1 * gain 1 ends the session at a top-grade click
        stopped = per_request.filter(pl.col("s").is_not_null())
        assert stopped.height > 0 and (stopped["last"] == stopped["s"]).all()
    if model == "pbm":
        assert per_request["n"].max() > 1


def test_the_same_seed_gives_the_same_tables_another_seed_other_clicks(judged):
    settings = {"click_model": "dbn", "intervention_rate": 0.3}
    one, split_one = clicks(judged, **settings)
    again, split_again = clicks(judged, **settings)
    for a, b in [
        (one.impressions, again.impressions),
        (one.truth.relevance, again.truth.relevance),
        (one.truth.examination, again.truth.examination),
        (split_one, split_again),
    ]:
        assert a.equals(b)
    other, _ = clicks(judged, **settings, seed=1)
    assert not one.impressions["click"].equals(other.impressions["click"])
    # Clicks come from their own stream: another click model shows the same lists.
    cascade, _ = clicks(judged, click_model="cascade", intervention_rate=0.3)
    keys = ["request_id", "product_id", "position"]
    assert cascade.impressions.select(keys).equals(one.impressions.select(keys))


def test_pbm_clicks_over_attraction_track_the_true_examination(judged):
    """Per position, clicks / sum of the shown items' attraction estimates the examination:
    with 60,000 sessions the largest relative error over positions 1-8 is about 6% (ten
    seeds); 15% leaves room while an examination one position off (12-50%) fails."""
    log, _ = clicks(judged, sessions_per_query=1000, top_k=DOCS)
    rows = log.impressions.join(log.truth.relevance, on=["request_id", "product_id"])
    shown_attraction = attraction(rows["true_relevance"].to_numpy(), 4.0, 0.05)
    estimate = (
        rows.with_columns(attraction=shown_attraction)
        .group_by("position")
        .agg(pl.col("click").sum() / pl.col("attraction").sum())
        .sort("position")
    )
    truth = log.truth.examination
    np.testing.assert_allclose(truth["examination"], 1.0 / np.arange(1, DOCS + 1))
    np.testing.assert_allclose(estimate["click"], truth["examination"], rtol=0.15)


def test_shuffled_sessions_record_the_ranker_and_feed_the_intervention_estimator(judged):
    log, _ = clicks(judged, sessions_per_query=200, top_k=5, intervention_rate=0.5)
    rows = log.impressions
    shuffled = rows.filter(pl.col("randomized") == 1)
    assert 0.4 < shuffled["request_id"].n_unique() / rows["request_id"].n_unique() < 0.6
    assert (
        rows.filter(pl.col("randomized") == 0).select(
            (pl.col("ranker_position") == pl.col("position")).all()
        )
    ).item()
    ranks = shuffled.group_by("request_id").agg(pl.col("ranker_position").sort())
    assert all(r == [1, 2, 3, 4, 5] for r in ranks["ranker_position"].to_list())
    estimate = estimate_propensities(rows, method="intervention")
    np.testing.assert_allclose(
        estimate.curve["propensity"], log.truth.examination["examination"], rtol=0.2
    )


def test_a_linear_gain_makes_attraction_proportional_to_the_judgment(judged):
    """With every position examined (position bias 0) and no noise, an item is clicked with
    its attraction: grade / 4 (linear) or (2^grade - 1) / 15 (exponential)."""
    for gain, expected in [("linear", lambda g: g / 4), ("exponential", lambda g: (2**g - 1) / 15)]:
        log, _ = clicks(judged, position_bias=0.0, click_noise=0.0, gain=gain, top_k=DOCS)
        rate = (
            log.impressions.join(grade_of(judged), on="product_id")
            .group_by("grade")
            .agg(pl.col("click").mean(), pl.len())
            .filter(pl.col("len") >= 200)
        )
        np.testing.assert_allclose(rate["click"], expected(rate["grade"].to_numpy()), atol=0.06)


def test_sessions_keep_their_queries_split(letor, tmp_path):
    source = LetorSource(str(letor), simulate_clicks={"sessions_per_query": 3})
    datamodule = SearchLogDataModule(source)
    datamodule.setup()
    given = read_letor(letor).impressions.select("request_id", "dataset_split").unique()
    for split, file_split in [("train", "train"), ("val", "val"), ("test", "test")]:
        sessions = pl.Series(datamodule.arrays(split).request_id).unique()
        queries = sessions.str.split("#").list.first().unique()
        expected = given.filter(pl.col("dataset_split") == file_split)["request_id"]
        assert sorted(queries.to_list()) == sorted(expected.to_list())
        assert sessions.len() == 3 * expected.len()
    test = datamodule.rows("test").join(
        read_letor(letor).impressions.select("product_id", JUDGMENT), on="product_id"
    )
    assert (test["true_relevance"] == test[JUDGMENT]).all()
    assert datamodule.spec.tasks == ("relevance", "click")
    assert any(note.startswith("semi-synthetic clicks") for note in datamodule.notes)
    # Without a validation file (and in WANDS, without any split), parts are drawn by
    # query: all sessions of a query land in one part.
    folder = write_letor(tmp_path / "two", n_queries=(40, 10), names=("train", "test"))
    log = validate_judged_log(read_letor(folder))
    _, split = simulate_click_log(
        log, judged_assignment(log.impressions, SplitConfig()), SimulateClicks()
    )
    wands = validate_judged_log(read_wands(write_wands(tmp_path / "wands")))
    wands_log, wands_split = simulate_click_log(
        wands,
        judged_assignment(wands.impressions, SplitConfig()),
        SimulateClicks(logging="feature", logging_feature="average_rating", logging_noise=0.0),
    )
    # Query 0 shows product 0 (rated 4.5) above product 1 (no rating), in every session.
    first = wands_log.impressions.filter(pl.col("request_id").str.starts_with("0#"))
    assert first.filter(pl.col("position") == 1)["product_id"].unique().to_list() == ["0"]
    for parts in (split, wands_split):
        by_query = parts.group_by(pl.col("request_id").str.split("#").list.first()).agg(
            pl.col("split").n_unique()
        )
        assert (by_query["split"] == 1).all()
        assert set(parts["split"]) == {"train", "val", "test"}


def test_the_option_off_leaves_the_judged_dataset_as_it_was(letor):
    path = str(Path(letor).resolve())
    for options in ({}, {"simulate_clicks": None}, {"simulate_clicks": False}):
        source = make_source("letor", path=str(letor), options=options)
        assert source.describe() == {"dataset": "letor", "path": path}
    datamodule = SearchLogDataModule(make_source("letor", path=str(letor)))
    datamodule.setup()
    assert datamodule.log.impressions.equals(validate_judged_log(read_letor(letor)).impressions)
    assert datamodule.log.truth is None and datamodule.spec.tasks == ("relevance",)
    on = make_source("letor", path=str(letor), options={"simulate_clicks": True})
    assert on.describe()["simulate_clicks"] == asdict(SimulateClicks(gain="exponential"))
    esci = make_source("esci", path=".", options={"simulate_clicks": {"click_model": "dbn"}})
    assert esci.describe()["simulate_clicks"]["gain"] == "linear"  # its judgments are gains


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("click_model=ubm", "simulate_clicks.click_model must be one of pbm, cascade, dbn"),
        ("click_noise=1.5", "simulate_clicks.click_noise must lie in \\[0, 1\\], got 1.5"),
        ("dbn_satisfaction=-0.1", "simulate_clicks.dbn_satisfaction must lie in \\[0, 1\\]"),
        ("intervention_rate=2", "simulate_clicks.intervention_rate must lie in \\[0, 1\\]"),
        ("position_bias=-1", "simulate_clicks.position_bias must be >= 0"),
        ("top_k=0", "simulate_clicks.top_k must be >= 1, got 0"),
        ("sessions_per_query=0", "simulate_clicks.sessions_per_query must be >= 1"),
        ("logging=feature", "simulate_clicks.logging_feature names the column of logging"),
        ("logging_feature=f1", "simulate_clicks.logging_feature names the column of logging"),
        ("logging=bandit", "simulate_clicks.logging must be one of noisy_grades, feature"),
        ("clicks=3", "simulate_clicks: unknown setting\\(s\\) clicks"),
        (
            "{logging: feature, logging_feature: bm25}",
            "simulate_clicks.logging_feature: letor has no numeric feature 'bm25'",
        ),
    ],
)
def test_bad_settings_end_in_one_line_before_any_data_work(setting, message):
    key = "dataset_options.simulate_clicks"
    assignment = f"{key}={setting}" if setting.startswith("{") else f"{key}.{setting}"
    with pytest.raises(ValueError, match=f"^dataset_options\\.{message}") as error:
        load_spec(overrides={"dataset": "letor", "data_path": "/nowhere"}, assignments=[assignment])
    assert "\n" not in str(error.value)


def test_a_logging_feature_is_one_of_the_datasets_numeric_columns():
    feature = {"logging": "feature", "logging_feature": "brand"}
    with pytest.raises(ValueError, match="esci has no numeric feature 'brand'; its features: none"):
        make_source("esci", path=".", options={"simulate_clicks": feature})
    with pytest.raises(ValueError, match="its features: rating_count, average_rating"):
        make_source("wands", path=".", options={"simulate_clicks": feature})


def test_a_logging_feature_the_files_lack_is_named(letor):
    settings = {"logging": "feature", "logging_feature": "f99"}
    datamodule = SearchLogDataModule(LetorSource(str(letor), simulate_clicks=settings))
    with pytest.raises(ValueError, match="logging_feature: no numeric column 'f99' \\(found: f1"):
        datamodule.setup()


def test_a_product_judged_twice_for_one_query_is_refused():
    impressions = pl.DataFrame(
        {
            "request_id": ["q", "q", "q"],
            "query": ["a lamp"] * 3,
            "product_id": ["p1", "p2", "p1"],
            "position": [1, 2, 3],
            JUDGMENT: [2.0, 0.0, 1.0],
        }
    )
    products = pl.DataFrame({"product_id": ["p1", "p2"], "title": ["lamp", "rug"]})
    log = validate_judged_log(SearchLog(products, impressions, sources={"impressions": "x.csv"}))
    assignment = pl.DataFrame({"request_id": ["q"], "split": ["train"]})
    with pytest.raises(LogValidationError, match="x.csv: column 'product_id': a product judged"):
        simulate_click_log(log, assignment, SimulateClicks())


def test_bench_runs_on_semi_synthetic_letor_clicks(letor, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["bench", "--dataset", "letor", "--data", str(letor), "--models", "xgboost"]
    argv += ["--seeds", "0", "--out", str(out), "--threads", "1", "--quiet", "--wandb", "disabled"]
    argv += ["--name", "letor-cascade", "--set", "model_config.xgboost.n_estimators=20"]
    argv += ["--set", "dataset_options.simulate_clicks.click_model=cascade"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "NDCG@10 true" in printed and "| xgboost |" in printed
    table = pl.read_csv(out / "letor-cascade" / "summary.csv")
    ndcg = dict(zip(table["model"], table["true_relevance/ndcg@10:mean"], strict=True))
    assert ndcg["xgboost"] > ndcg["ref: random"] + 0.1
    assert "semi-synthetic clicks" in (out / "letor-cascade" / "summary.md").read_text()


def test_a_semi_synthetic_run_gets_its_own_results_folder(tmp_path):
    from benchmarks.config import load_spec

    folder = str(tmp_path / "Fold1")
    judged = load_spec(None, {"dataset": "letor", "data_path": folder}, [])
    clicks = load_spec(
        None,
        {"dataset": "letor", "data_path": folder},
        ["dataset_options.simulate_clicks.click_model=cascade"],
    )
    every_default = load_spec(
        None, {"dataset": "esci", "data_path": folder}, ["dataset_options.simulate_clicks=true"]
    )
    assert judged.name == f"letor-{tmp_path.name}-Fold1"
    assert clicks.name == f"{judged.name}-clicks-cascade"
    assert every_default.name == "esci-us-small-clicks-pbm"
