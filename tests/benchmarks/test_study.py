"""`rankbench study`: rows x columns of small benchmarks, one table, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from benchmarks.config import load_spec, source_for
from benchmarks.report import holm
from benchmarks.study import run_study
from benchmarks.study_plan import PACKAGED_STUDY, cell_spec, load_study

PLAN = """\
name: mini
columns:
  eta1: {simulator: {position_bias: 1.0}}
  eta2: {description: strong position bias, simulator: {position_bias: 2.0}}
rows:
  xgb_clicks: {model: xgboost, model_config: {target: click, n_estimators: 20}}
  xgb_labels: {model: xgboost, model_config: {n_estimators: 20}}
  xgb_no_debias:
    model: xgboost
    model_config: {n_estimators: 20}
    data: {labels: {labeling: {debias: false}}}
"""
METRIC = "true_relevance/ndcg@10"


def _spec(out, **changes):
    overrides = {
        "preset": "tiny",
        "seeds": [0, 1],
        "output": str(out),
        "threads": 1,
        "wandb": {"mode": "disabled"},
        **changes,
    }
    return load_spec(None, overrides, [])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    plan = root / "plan.yaml"
    plan.write_text(PLAN)
    outcome = run_study(_spec(root / "out"), "rankbench study", plan, progress=False, echo=_quiet)
    return root, plan, outcome


def _quiet(*_):
    pass


def test_every_cell_is_the_mean_of_its_records(study):
    _, _, outcome = study
    trained = outcome.table.filter(~pl.col("reference"))
    assert trained.height == 6 and set(trained["column"]) == {"eta1", "eta2"}
    for cell in trained.iter_rows(named=True):
        runs = outcome.folder / cell["column"] / cell["row"]
        values = [
            json.loads((runs / f"xgboost-seed{s}.json").read_text())["metrics"]["true_relevance"][
                "ndcg@10"
            ]["mean"]
            for s in (0, 1)
        ]
        assert cell["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]


def test_tests_are_corrected_within_a_column_and_skip_the_references(study):
    _, _, outcome = study
    for column in ("eta1", "eta2"):
        part = outcome.table.filter(pl.col("column") == column)
        trained = part.filter(~pl.col("reference"))
        best = trained.filter(pl.col("mean") == trained["mean"].max())
        assert best["p"].is_null().all()  # the best row is what the others are tested against
        assert np.allclose(
            holm(trained["p_raw"]).drop_nulls().to_numpy(), trained["p"].drop_nulls().to_numpy()
        )
        references = part.filter(pl.col("reference"))
        assert references["row"].to_list() == ["ref: logged order", "ref: random"]
        assert references["p"].is_null().all()


def test_the_table_has_a_row_per_study_row_and_a_column_per_condition(study):
    _, _, outcome = study
    summary = (outcome.folder / "summary.md").read_text()
    assert "| row | model | eta1 | eta2 |" in summary
    for row in ("xgb_clicks", "xgb_labels", "xgb_no_debias", "ref: random"):
        assert f"| {row} |" in summary
    assert "`eta2`: strong position bias" in summary
    assert "Processors the runs trained on: " in summary
    assert "Reproduce with: `rankbench study --seeds 0 1`" in summary  # no --models: rows name them
    provenance = json.loads((outcome.folder / "study.json").read_text())
    splits = {c["split_hash"] for c in provenance["columns"]}
    assert len(splits) == 1  # the condition changes clicks, not which requests are tested
    assert (outcome.folder / "ndcg.png").stat().st_size > 0


def test_a_rerun_reuses_every_record(study):
    root, plan, outcome = study
    again = run_study(_spec(root / "out"), "rankbench study", plan, progress=False, echo=_quiet)
    assert again.ran == [] and len(again.skipped) == 12
    assert again.table.equals(outcome.table)


def test_rows_and_columns_can_be_selected(study, tmp_path):
    _, plan, _ = study
    outcome = run_study(
        _spec(tmp_path, seeds=[0]),
        "rankbench study",
        plan,
        rows=["xgb_labels"],
        columns=["eta2"],
        progress=False,
        echo=_quiet,
    )
    assert outcome.ran == ["eta2/xgb_labels/xgboost-seed0"]
    with pytest.raises(ValueError, match="unknown row"):
        run_study(_spec(tmp_path), "x", plan, rows=["nope"], progress=False, echo=_quiet)


@pytest.mark.parametrize(
    "change, message",
    [
        ("rows: {a: {model: nope}}", "row 'a': unknown model 'nope'; registered: "),
        ("rows: {a: {model: xgboost, colour: red}}", "row 'a': unknown key.*colour"),
        ("rows: {'a/b': {model: xgboost}}", "row 'a/b': a name is a folder name"),
        ("rows: {a: {model: xgboost, model_config: {depth: 3}}}", "depth"),
        ("columns: {c: {simulator: {position_bis: 2}}}", "position_bis"),
        ("columns: {c: {colour: red}}", "column 'c': unknown key"),
    ],
)
def test_bad_study_files_end_in_one_line_before_any_data_work(tmp_path, change, message):
    base = {"rows": "rows: {a: {model: xgboost}}", "columns": "columns: {c: {}}"}
    base[change.split(":")[0]] = change
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: bad\n" + "\n".join(base.values()) + "\n")
    with pytest.raises(ValueError, match=message) as error:
        run_study(_spec(tmp_path / "out"), "x", plan, progress=False, echo=_quiet)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_the_packaged_study_builds_every_cell(tmp_path):
    plan = load_study(PACKAGED_STUDY)
    spec = load_spec(None, {"output": str(tmp_path)}, [])
    assert [c.name for c in plan.columns] == ["pbm", "cascade", "dbn"]
    for column in plan.columns:
        for row in plan.rows:
            cell = cell_spec(spec, plan, column, row)
            assert cell.models == (row.model,)
            assert cell.simulator["click_model"] == column.name
            assert source_for(cell).config().click_model == column.name  # a valid log


def test_the_packaged_letor_study_simulates_clicks_per_column(tmp_path):
    from tests.datamodules.test_letor import write_letor

    plan = load_study(PACKAGED_STUDY.with_name("debiasing-letor.yaml"))
    folder = str(write_letor(tmp_path / "letor"))
    spec = load_spec(None, {"dataset": "letor", "data_path": folder}, [])
    assert [r.name for r in plan.rows] == [r.name for r in load_study(PACKAGED_STUDY).rows]
    for column in plan.columns:
        for row in plan.rows:
            cell = cell_spec(spec, plan, column, row)
            clicks = source_for(cell).click_simulation
            assert clicks.click_model == column.name and clicks.sessions_per_query == 10


def test_the_study_command_runs_a_study_file(study, tmp_path, capsys):
    from benchmarks.cli import main

    _, plan, _ = study
    argv = ["study", "--preset", "tiny", "--study-file", str(plan), "--seeds", "0"]
    argv += ["--rows", "xgb_labels", "--out", str(tmp_path), "--wandb", "disabled", "--quiet"]
    assert main([*argv, "--threads", "1"]) == 0
    assert "| xgb_labels | xgboost |" in capsys.readouterr().out
    assert (tmp_path / "simulator-tiny-mini" / "summary.md").is_file()
