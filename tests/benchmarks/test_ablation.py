"""`rankbench ablate` on the tiny preset with MMoE: folders, table, significance, resume."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import yaml

from benchmarks import ablation
from benchmarks.ablation import PACKAGED_VARIANTS, load_ablation, variant_spec
from benchmarks.cli import main
from benchmarks.config import load_spec
from benchmarks.report import Column, ModelResult, holm, paired_test, summarise

VARIANTS = """\
model: mmoe
variants:
  full: {}
  single_task:
    description: relevance is the only training task
    model_config: {task_weights: {relevance: 1.0}}
  behavioural:
    data: {labels: {relevance: behavioural}}
"""
NAMES = ["full", "single_task", "behavioural"]
HEADLINE = "true_relevance/ndcg@10"


def _ablate(out, variants_file, *extra: str) -> int:
    """`rankbench ablate` on the tiny preset, MMoE for two epochs, one seed, no W&B."""
    return main(
        [
            "ablate",
            "--preset",
            "tiny",
            "--model",
            "mmoe",
            "--variants-file",
            str(variants_file),
            "--seeds",
            "0",
            "--out",
            str(out),
            "--wandb",
            "disabled",
            "--quiet",
            "--set",
            "model_config.mmoe.max_epochs=2",
            *extra,
        ]
    )


@contextlib.contextmanager
def _counting_builds():
    """Record the name of every variant config a data module is prepared for."""
    builds: list[str] = []
    prepare = ablation.prepare_datamodule

    def counting(spec, *args, **kwargs):
        builds.append(spec.name.rsplit("/", 1)[1])
        return prepare(spec, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ablation, "prepare_datamodule", counting)
        yield builds


def _run(out, variants_file, *extra: str) -> SimpleNamespace:
    stdout = io.StringIO()
    with _counting_builds() as builds, contextlib.redirect_stdout(stdout):
        code = _ablate(out, variants_file, *extra)
    return SimpleNamespace(code=code, builds=builds, out=stdout.getvalue())


@pytest.fixture(scope="module")
def variants_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("variants") / "variants.yaml"
    path.write_text(VARIANTS)
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, variants_file):
    out = tmp_path_factory.mktemp("results")
    run = _run(out, variants_file)
    run.folder = out / "simulator-tiny-ablation"
    return run


@pytest.fixture
def copy_of_results(first_run, tmp_path):
    """The first run's results in a folder of the test's own, to run again over them."""
    shutil.copytree(first_run.folder, tmp_path / "simulator-tiny-ablation")
    return tmp_path


def _record(folder, variant: str) -> dict:
    return json.loads((folder / variant / "mmoe-seed0.json").read_text())


def test_each_variant_has_a_folder_of_run_records(first_run):
    assert first_run.code == 0
    for variant in NAMES:
        record = _record(first_run.folder, variant)
        assert record["benchmark"] == f"simulator-tiny-ablation/{variant}"
        assert (first_run.folder / variant / "mmoe-seed0.queries.parquet").is_file()
    assert _record(first_run.folder, "single_task")["config"]["model_config"]["task_weights"] == {
        "relevance": 1.0
    }
    full = _record(first_run.folder, "full")["config"]
    assert full["model_config"]["task_weights"]["click"] == 0.5  # the model's defaults
    assert full["model_config"]["max_epochs"] == 2  # --set reaches every variant
    assert full["data"]["labels"]["relevance"] == "derived"
    assert _record(first_run.folder, "behavioural")["config"]["data"]["labels"]["relevance"] == (
        "behavioural"
    )


def test_the_table_has_one_row_per_variant_in_file_order(first_run):
    table = pl.read_csv(first_run.folder / "summary.csv")
    assert table["variant"].to_list() == NAMES
    assert table.filter(pl.col("variant") == "full")[f"{HEADLINE}:diff_vs_full"].item() == 0
    summary = (first_run.folder / "summary.md").read_text()
    assert "Reproduce with: `rankbench ablate --preset tiny --model mmoe" in summary
    rows = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ")]
    assert rows[1:] == NAMES  # after the header
    assert "Reference variant: `full`" in summary and "Wilcoxon" in summary
    assert "p < 0.05" in summary and "seeds 0 " in summary
    assert "- `single_task`: relevance is the only training task" in summary
    assert "Processors the runs trained on: " in summary  # every variant's runs, counted
    assert '- `behavioural`: data.labels.relevance="behavioural"' in summary  # no description
    assert (first_run.folder / "ndcg.png").stat().st_size > 1000
    assert "| variant | Δ NDCG@10 true |" in first_run.out  # printed too


def test_significance_is_against_full(first_run):
    table = pl.read_csv(first_run.folder / "summary.csv")
    full = pl.read_parquet(first_run.folder / "full" / "mmoe-seed0.queries.parquet")
    raw = {}
    for variant in ("single_task", "behavioural"):
        per_query = pl.read_parquet(first_run.folder / variant / "mmoe-seed0.queries.parquet")
        raw[variant] = table.filter(pl.col("variant") == variant)[f"{HEADLINE}:p_raw"].item()
        assert raw[variant] == pytest.approx(paired_test(full, per_query, HEADLINE))
    # Stars follow the Holm-corrected values over the two variants compared.
    corrected = dict(zip(table["variant"], table[f"{HEADLINE}:p"], strict=True))
    expected = holm(pl.Series(list(raw.values()))).to_list()
    assert [corrected[v] for v in raw] == pytest.approx(expected)
    assert table.filter(pl.col("variant") == "full")[f"{HEADLINE}:p"].is_null().all()


def test_relevance_columns_are_not_compared_across_labels(first_run):
    table = pl.read_csv(first_run.folder / "summary.csv")
    same = dict(zip(table["variant"], table["same_relevance_labels"], strict=True))
    assert same == {"full": True, "single_task": True, "behavioural": False}
    behavioural = table.filter(pl.col("variant") == "behavioural")
    assert behavioural["relevance/ndcg@10:p"].is_null().all()
    assert behavioural["relevance/ndcg@10:mean"].is_not_null().all()  # shown, not tested
    assert behavioural[f"{HEADLINE}:p"].is_not_null().all()  # true relevance: compared
    summary = (first_run.folder / "summary.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if "|" in line}
    assert rows["behavioural"].count("†") == 4  # its four NDCG rel cells
    assert "†" not in rows["single_task"] and "†: the variant's test `relevance` labels" in summary


def test_variants_with_the_same_data_share_one_datamodule(first_run):
    assert first_run.builds == ["full", "behavioural"]  # single_task reuses full's


def test_every_variant_has_the_same_split(first_run):
    hashes = {_record(first_run.folder, v)["split_hash"] for v in NAMES}
    assert len(hashes) == 1
    (split,) = hashes
    assert f"Split {split} (every variant)" in (first_run.folder / "summary.md").read_text()
    provenance = json.loads((first_run.folder / "ablation.json").read_text())
    assert provenance["split_hash"] == split and provenance["model"] == "mmoe"


def test_a_rerun_skips_finished_runs(copy_of_results, variants_file):
    folder = copy_of_results / "simulator-tiny-ablation"
    before = {v: _record(folder, v)["finished_at"] for v in NAMES}
    run = _run(copy_of_results, variants_file)
    assert run.code == 0 and run.out.count("skip mmoe-seed0") == 3 and "done " not in run.out
    assert {v: _record(folder, v)["finished_at"] for v in NAMES} == before


def test_a_subset_of_variants_always_includes_full(copy_of_results, variants_file):
    run = _run(copy_of_results, variants_file, "--variants", "single_task")
    assert run.code == 0 and run.builds == ["full"]
    table = pl.read_csv(copy_of_results / "simulator-tiny-ablation" / "summary.csv")
    assert table["variant"].to_list() == ["full", "single_task"]


def test_a_variant_changing_the_split_is_an_error(copy_of_results, tmp_path, capsys):
    other_split = tmp_path / "other_split.yaml"
    other_split.write_text(VARIANTS + "  other_split:\n    data: {split: {test_fraction: 0.2}}\n")
    code = _ablate(copy_of_results, other_split, "--variants", "other_split")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "variant(s) other_split: split" in err and "differs from 'full'" in err
    assert not (copy_of_results / "simulator-tiny-ablation" / "other_split").exists()


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        (
            {"full": {}, "typo": {"model_confg": {"dropout": 0.0}}},
            "variant 'typo': unknown key(s) model_confg; a variant holds description, "
            "model_config, data",
        ),
        ({"no_text": {"model_config": {"text": False}}}, "the first variant must be"),
        (
            {"full": {}, "bad_model": {"model_config": {"nope": 1}}},
            "variant 'bad_model': model_config.mmoe: unknown setting(s) nope",
        ),
        (
            {"full": {}, "bad_data": {"data": {"labels": {"relevance": "nope"}}}},
            "variant 'bad_data': data.labels.relevance must be one of",
        ),
        ({"full": {}, "wandb": {}}, "a variant name is a folder name"),
    ],
)
def test_bad_variants_are_one_line_errors(tmp_path, capsys, variants, message):
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump({"model": "mmoe", "variants": variants}, sort_keys=False))
    code = _ablate(tmp_path / "out", path)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_unknown_variant_names_are_a_one_line_error(tmp_path, variants_file, capsys):
    code = _ablate(tmp_path, variants_file, "--variants", "single_task", "nope")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == (
        "rankbench: error: unknown variant(s) nope; variants: full, single_task, behavioural"
    )


def test_wandb_logs_one_offline_run_per_variant_and_seed(tmp_path, variants_file):
    run = _run(tmp_path, variants_file, "--variants", "full", "--wandb", "offline")
    assert run.code == 0
    runs = sorted((tmp_path / "simulator-tiny-ablation" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # full x seed 0, and the ablation table
    assert all(list(r.glob("*.wandb")) for r in runs)
    assert "W&B offline runs:" in run.out


def test_variant_settings_replace_the_models_and_merge_into_the_data():
    spec = load_spec(
        overrides={"preset": "tiny"},
        assignments=[
            "model_config.mmoe.task_weights={click: 1.0, relevance: 1.0}",
            "model_config.mmoe.dropout=0.2",
            "data.labels.labeling.smoothing=false",
        ],
    )
    plan = load_ablation(PACKAGED_VARIANTS)
    variants = {v.name: v for v in plan.variants}
    # a changed copy: a model setting replaced whole, the others kept
    single_task = variant_spec(spec, "mmoe", variants["single_task"])
    assert single_task.model_config["mmoe"] == {"task_weights": {"relevance": 1.0}, "dropout": 0.2}
    assert single_task.models == ("mmoe",)
    assert single_task.name == "simulator-tiny-ablation/single_task"
    assert (
        single_task.changed(model_config=spec.model_config, name=spec.name, models=spec.models)
        == spec
    )
    no_debias = variant_spec(spec, "mmoe", variants["labels_no_debias"])
    labeling = no_debias.data.labels.labeling
    assert labeling.debias is False and labeling.smoothing is False
    assert spec.data.labels.labeling.debias is True  # the bench spec untouched


def test_the_packaged_ablation_file():
    plan = load_ablation()
    assert plan.model == "mtl_tinybert"
    assert [v.name for v in plan.variants] == [
        "full",
        "behavioural_targets",
        "frozen_encoder",
        "all_layers",
        "no_interaction_tokens",
        "no_text",
        "single_task",
        "labels_no_debias",
        "labels_no_similarity",
    ]
    raw = yaml.safe_load(PACKAGED_VARIANTS.read_text())["variants"]
    assert all(body.get("description") for body in raw.values())  # written, not generated
    lines = PACKAGED_VARIANTS.read_text().splitlines()
    for name in raw:  # a one-line comment above each variant says what it removes
        above = lines[lines.index(f"  {name}:") - 1]
        assert above.strip().startswith("# ")
    overrides = {v.name: (v.model_config, v.data) for v in plan.variants}
    assert overrides["full"] == ({}, {})
    assert overrides["behavioural_targets"] == ({}, {"labels": {"relevance": "behavioural"}})
    assert overrides["frozen_encoder"] == ({"fine_tune_layers": 0}, {})
    assert overrides["all_layers"] == ({"fine_tune_layers": "all"}, {})
    assert overrides["no_interaction_tokens"] == ({"interaction_tokens": False}, {})
    assert overrides["no_text"] == ({"text": False}, {})
    assert overrides["single_task"] == ({"task_weights": {"relevance": 1.0}}, {})
    assert overrides["labels_no_debias"] == ({}, {"labels": {"labeling": {"debias": False}}})
    assert overrides["labels_no_similarity"] == (
        {},
        {"labels": {"labeling": {"use_similarity": False}}},
    )


def _result(name: str, values: np.ndarray) -> ModelResult:
    per_query = pl.DataFrame({"request_id": np.arange(len(values)), "m/ndcg@10": values})
    return ModelResult(name, False, {"m/ndcg@10": [float(values.mean())]}, per_query, [1.0], [1.0])


def test_summarise_against_a_named_row_instead_of_the_best():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, 60)
    results = [
        _result("full", base),
        _result("better", base + 0.1 + rng.normal(0, 0.01, 60)),  # the best, clearly
        _result("close", base + rng.normal(0, 0.01, 60)),  # like full, far from the best
    ]
    columns = [Column("m/ndcg@10", "NDCG@10")]

    def p_values(table):
        return dict(zip(table["model"], table["m/ndcg@10:p"], strict=True))

    against_best = p_values(summarise(results, columns))
    assert against_best["better"] is None and against_best["close"] < 0.05
    against_full = p_values(summarise(results, columns, against="full"))
    assert against_full["full"] is None
    assert against_full["better"] < 0.05 and against_full["close"] > 0.05
    with pytest.raises(ValueError, match="no row named 'nope'"):
        summarise(results, columns, against="nope")
