"""LETOR / SVMlight files: parsing, the judged DataModule, and the tabular rankers on them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from datamodules import SearchLogDataModule
from datamodules.letor import parse_svmlight, read_letor
from datamodules.sources import LetorSource
from datamodules.tables import LogValidationError

SNIPPET = """\
# a comment line
2 qid:10 1:0.5 3:1.25 # docid = A
0 qid:10 2:-1 3:0.0
1 qid:11 1:1 2:2 3:3 #docid = C

1 qid:11 3:7
"""


def write_letor(folder, n_queries=(40, 10, 10), docs=8, seed=0, names=("train", "vali", "test")):
    """Synthetic judged files: the label grows with feature 1, feature 3 is noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    qid = 0
    for name, count in zip(names, n_queries, strict=True):
        lines = []
        for _ in range(count):
            qid += 1
            for _ in range(docs):
                f1, f2, f3 = rng.normal(), rng.normal(), rng.normal()
                label = int(np.clip(np.round(1.5 + 1.2 * f1 + 0.3 * rng.normal()), 0, 4))
                lines.append(f"{label} qid:{qid} 1:{f1:.4f} 2:{f2:.4f} 3:{f3:.4f} # doc")
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_parse_svmlight(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(SNIPPET)
    lines, pairs = parse_svmlight(path)
    assert lines["line"].to_list() == [2, 3, 4, 6]
    assert lines["qid"].to_list() == ["10", "10", "11", "11"]
    assert lines["label"].to_list() == [2.0, 0.0, 1.0, 1.0]
    first = pairs.filter(pl.col("line") == 2)
    assert first["feature"].to_list() == [1, 3] and first["number"].to_list() == [0.5, 1.25]


def test_read_letor_gives_a_judged_log(tmp_path):
    folder = tmp_path / "letor"
    folder.mkdir()
    (folder / "train.txt").write_text(SNIPPET)
    (folder / "test.txt").write_text("3 qid:12 1:9\n0 qid:12 2:4\n")
    log = read_letor(folder)
    impressions = log.impressions
    assert impressions["request_id"].to_list() == ["10", "10", "11", "11", "12", "12"]
    assert impressions["position"].to_list() == [1, 2, 1, 2, 1, 2]
    assert impressions["judgment"].to_list() == [2.0, 0.0, 1.0, 1.0, 3.0, 0.0]
    assert impressions["dataset_split"].to_list() == ["train"] * 4 + ["test"] * 2
    products = log.products.sort("product_id")
    assert products.columns == ["product_id", "f1", "f2", "f3"]
    # A feature a line leaves out is 0.
    row = log.products.filter(pl.col("product_id") == "train:3").row(0, named=True)
    assert row == {"product_id": "train:3", "f1": 0.0, "f2": -1.0, "f3": 0.0}


def test_the_datamodule_keeps_the_files_split_and_the_labels(tmp_path):
    datamodule = SearchLogDataModule(LetorSource(str(write_letor(tmp_path / "letor"))))
    datamodule.setup()
    assert datamodule.spec.tasks == ("relevance",)
    assert datamodule.spec.text_fields == ("query",)
    assert {"f1", "f2", "f3"} <= set(datamodule.spec.numeric)
    assert "query_title_similarity" not in datamodule.spec.numeric
    assert [datamodule.arrays(s).n_groups for s in ("train", "val", "test")] == [40, 10, 10]
    test_ids = set(datamodule.arrays("test").request_id.tolist())
    assert test_ids == {str(q) for q in range(51, 61)}  # the test file's queries
    assert any("judged" in note for note in datamodule.notes)


def test_without_a_validation_file_validation_comes_from_train(tmp_path):
    folder = write_letor(tmp_path / "letor", n_queries=(40, 10), names=("train", "test"))
    datamodule = SearchLogDataModule(LetorSource(str(folder)))
    datamodule.setup()
    assert [datamodule.arrays(s).n_groups for s in ("train", "val", "test")] == [36, 4, 10]


def test_the_tabular_rankers_run_on_letor_files(tmp_path, capsys):
    folder = write_letor(tmp_path / "letor")
    out = tmp_path / "results"
    models = ["xgboost", "tabnet", "ft_transformer", "dcn_v2", "mmoe"]
    settings = [f"model_config.{m}.max_epochs=2" for m in ("ft_transformer", "dcn_v2", "mmoe")]
    settings += ["model_config.tabnet.max_epochs=3", "model_config.xgboost.n_estimators=30"]
    argv = ["bench", "--dataset", "letor", "--data", str(folder), "--models", *models]
    argv += ["--seeds", "0", "--out", str(out), "--quiet", "--wandb", "disabled"]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 0, capsys.readouterr().err
    name = f"letor-{tmp_path.name}-letor"  # the parent folder too: Fold1 of which dataset
    table = pl.read_csv(out / name / "summary.csv")
    assert set(models) <= set(table["model"])
    assert "ref: logged order" not in set(table["model"])  # a file's order is no ranker's
    ndcg = dict(zip(table["model"], table["relevance/ndcg@10:mean"], strict=True))
    assert ndcg["xgboost"] > ndcg["ref: random"] + 0.05
    assert "judged pairs" in (out / name / "summary.md").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "x qid:1 1:2\n",
            "column 'label': labels that are not numbers, first on line 1 \\(1 row\\)",
        ),
        ("1 1:2 2:3\n", "column 'qid': lines without qid:<id> after the label, first on line 1"),
        ("1 qid:1 a:2\n", "column 'features': feature ids that are not non-negative integers"),
        (
            "1 qid:1 1:x\n2 qid:1 1:y\n",
            "feature values that are not numbers, first on line 1 \\(2 rows\\)",
        ),
        ("", "the file is empty"),
        ("# only a comment\n", "no data lines"),
    ],
)
def test_bad_lines_are_one_line_errors(tmp_path, content, message):
    folder = tmp_path / "letor"
    folder.mkdir()
    (folder / "train.txt").write_text(content)
    (folder / "test.txt").write_text("1 qid:9 1:1\n")
    with pytest.raises(LogValidationError, match=message):
        read_letor(folder)


def test_a_folder_without_test_file(tmp_path):
    folder = tmp_path / "letor"
    folder.mkdir()
    (folder / "train.txt").write_text("1 qid:1 1:1\n")
    with pytest.raises(LogValidationError, match="no test file"):
        read_letor(folder)


def test_rankbench_label_refuses_a_judged_dataset(tmp_path, capsys):
    folder = write_letor(tmp_path / "letor", n_queries=(4, 2, 2))
    assert main(["label", "--dataset", "letor", "--data", str(folder), "--quiet"]) == 2
    assert "already has graded labels" in capsys.readouterr().err


def test_a_letor_folder_scored_in_the_letor4_convention(tmp_path, capsys):
    # 8 documents a query: the LETOR 4.0 script scores NDCG@10 as 0 for every one of them.
    folder = write_letor(tmp_path / "letor", n_queries=(30, 8, 8))
    args = ["bench", "--dataset", "letor", "--data", str(folder), "--models", "xgboost"]
    args += ["--seeds", "0", "--out", str(tmp_path / "out"), "--wandb", "disabled", "--quiet"]
    assert main([*args, "--set", "metrics.convention=letor4"]) == 0
    results = next((tmp_path / "out").iterdir())
    queries = pl.read_parquet(results / "runs" / "xgboost-seed0.queries.parquet")
    assert (queries["relevance/ndcg@10"] == 0).all()
    assert (queries["relevance/ndcg@5"] > 0).any()
    summary = (results / "summary.md").read_text()
    assert "Metric convention letor4: empty_queries zero, ties file_order" in summary
