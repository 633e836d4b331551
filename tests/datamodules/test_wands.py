"""Wayfair WANDS: the three tab-separated files, the judged tables and the options."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from benchmarks.config import load_spec
from datamodules import SearchLogDataModule
from datamodules.sources import WandsSource
from datamodules.tables import LogValidationError
from datamodules.wands import read_wands

QUERY_CSV = """\
query_id\tquery\tquery_class
0\tsalon chair\tMassage Chairs
1\t"fawkes 36"" blue vanity"\tVanities
2\twand bunk beds\t
"""
PRODUCT_HEADER = (
    "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\t"
    "product_features\trating_count\taverage_rating\treview_count"
)
PRODUCT_ROWS = [
    "0\tsolid wood platform bed\tBeds\tFurniture / Bedroom Furniture / Beds\tdeep sleep\t"
    "color:brown|size:queen\t15.0\t4.5\t15.0",
    "1\tsalon chair pro\tMassage Chairs\tFurniture / Chairs\t\tcolor:black\t\t\t",
    "2\tfawkes 36'' vanity\tVanities|Bathroom Vanities\tHome Improvement / Bath\tblue, "
    "36 in\t\t100.0\t2.0\t98.0",
    "3\t\tBeds\tFurniture / Beds\tno name\t\t1.0\t5.0\t1.0",
    "4\tbunk bed twin\tKids Beds\t\tsturdy\t\t3.0\t4.0\t2.0",
]
LABEL_ROWS = [
    (0, 0, 1, "Exact"),
    (1, 1, 2, "Exact"),
    (2, 0, 0, "Irrelevant"),
    (3, 2, 4, "Partial"),
    (4, 0, 3, "Partial"),
    (5, 2, 0, "Irrelevant"),
]


def label_csv(rows=LABEL_ROWS) -> str:
    lines = ["id\tquery_id\tproduct_id\tlabel"] + ["\t".join(map(str, row)) for row in rows]
    return "\n".join(lines) + "\n"


def write_wands(folder, queries=QUERY_CSV, products=(PRODUCT_HEADER, *PRODUCT_ROWS), labels=None):
    """The three files of the repository's dataset/ folder, tab-separated."""
    dataset = folder / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    (dataset / "query.csv").write_text(queries)
    (dataset / "product.csv").write_text("\n".join(products) + "\n")
    (dataset / "label.csv").write_text(labels if labels is not None else label_csv())
    return folder


def write_generated_wands(folder, n_queries=30, per_query=6, seed=0):
    """Queries whose Exact products share their words: a ranker can learn the labels."""
    rng = np.random.default_rng(seed)
    nouns = ["lamp", "chair", "bed", "mug", "rug", "desk", "kettle", "towel", "sofa", "fan"]
    queries = ["query_id\tquery\tquery_class"]
    products, labels = [PRODUCT_HEADER], []
    for q in range(n_queries):
        noun, colour = nouns[q % len(nouns)], f"shade{q}"
        queries.append(f"{q}\t{colour} {noun}\t{noun.title()}s")
        for i in range(per_query):
            label = rng.choice(["Exact", "Partial", "Irrelevant"])
            name = {"Exact": f"{colour} {noun}", "Partial": noun}.get(label, "garden gnome")
            pid = q * per_query + i
            products.append(
                f"{pid}\t{name} model {i}\t{noun.title()}s\tFurniture / {noun.title()}s\t"
                f"about {name}\t\t{rng.integers(1, 500)}.0\t{rng.uniform(1, 5):.1f}\t3.0"
            )
            labels.append((len(labels), q, pid, label))
    return write_wands(folder, "\n".join(queries) + "\n", products, label_csv(labels))


def test_read_wands_gives_the_judged_tables(tmp_path):
    notes = []
    log = read_wands(write_wands(tmp_path / "WANDS"), notes=notes)
    impressions = log.impressions
    assert impressions.columns == ["request_id", "query", "product_id", "position", "judgment"]
    # Product 3 has no name: dropped with its label.
    assert impressions["request_id"].to_list() == ["0", "1", "0", "2", "2"]
    assert impressions["product_id"].to_list() == ["1", "2", "0", "4", "0"]
    assert impressions["position"].to_list() == [1, 1, 2, 1, 2]
    assert impressions["judgment"].to_list() == [2.0, 2.0, 0.0, 1.0, 0.0]
    assert impressions["query"][1] == 'fawkes 36" blue vanity'  # a quoted field
    assert notes == [
        "1 product without a title dropped",
        "1 judged pair whose product has no titled catalog entry dropped",
    ]
    products = log.products.sort("product_id")
    assert products.columns == [
        "product_id",
        "title",
        "description",
        "product_class",
        "category",
        "rating_count",
        "average_rating",
        "review_count",
    ]
    assert products["category"].to_list() == ["Furniture", "Furniture", "Home Improvement", None]
    assert products["product_class"][2] == "Vanities|Bathroom Vanities"
    assert products["description"][1] is None
    assert products["rating_count"].to_list() == [15.0, None, 100.0, 3.0]  # missing stays so
    assert products["average_rating"].dtype == pl.Float64


def test_the_dataset_folder_itself_is_accepted(tmp_path):
    folder = write_wands(tmp_path / "WANDS") / "dataset"
    assert read_wands(folder).impressions.height == 5


def test_gains_replace_the_defaults_per_label(tmp_path):
    log = read_wands(write_wands(tmp_path / "WANDS"), gains={"Exact": 1, "Partial": 0.5})
    assert log.impressions["judgment"].to_list() == [1.0, 1.0, 0.0, 0.5, 0.0]


def test_the_datamodule_splits_the_queries_at_random(tmp_path):
    datamodule = SearchLogDataModule(WandsSource(str(write_generated_wands(tmp_path / "W"))))
    datamodule.setup()
    assert datamodule.spec.tasks == ("relevance",)
    assert {"product_class", "category"} <= set(datamodule.spec.categorical)
    assert {"rating_count", "average_rating", "review_count"} <= set(datamodule.spec.numeric)
    groups = [datamodule.arrays(s).n_groups for s in ("train", "val", "test")]
    assert sum(groups) == 30 and min(groups) > 0


def test_rankbench_bench_runs_on_wands(tmp_path, capsys):
    folder = write_generated_wands(tmp_path / "WANDS")
    out = tmp_path / "results"
    argv = ["bench", "--dataset", "wands", "--data", str(folder), "--models", "xgboost"]
    argv += ["--seeds", "0", "--out", str(out), "--quiet", "--wandb", "disabled"]
    argv += ["--set", "model_config.xgboost.n_estimators=20"]
    argv += ["--set", "data.split.test_fraction=0.3"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "judged pairs" in (out / "wands" / "summary.md").read_text()


def test_wands_options():
    config = load_spec(overrides={"dataset": "wands"})
    assert config.name == "wands" and config.metrics.gain == "exponential"
    with pytest.raises(ValueError, match="unknown dataset_options for wands: locale"):
        load_spec(overrides={"dataset": "wands"}, assignments=["dataset_options.locale=us"])
    with pytest.raises(ValueError, match="wands: gains for unknown label\\(s\\) exact"):
        load_spec(overrides={"dataset": "wands"}, assignments=["dataset_options.gains={exact: 1}"])


# --------------------------------------------------------------------------- bad files


def test_missing_files(tmp_path):
    with pytest.raises(LogValidationError, match="WANDS folder not found"):
        read_wands(tmp_path / "nowhere")
    folder = write_wands(tmp_path / "WANDS")
    (folder / "dataset" / "product.csv").unlink()
    with pytest.raises(LogValidationError, match="product.csv: WANDS file not found"):
        read_wands(folder)


def test_a_comma_separated_file_is_named(tmp_path):
    folder = write_wands(tmp_path / "WANDS", labels=label_csv().replace("\t", ","))
    with pytest.raises(
        LogValidationError,
        match="label.csv: column 'query_id': required column is missing .*is it tab-separated",
    ):
        read_wands(folder)


def test_unknown_labels_are_counted(tmp_path):
    rows = [*LABEL_ROWS, (6, 1, 0, "exact"), (7, 1, 4, "Good")]
    with pytest.raises(
        LogValidationError,
        match="column 'label': unknown labels \\(Good, exact\\); expected Exact, Partial, "
        "Irrelevant \\(2 rows\\)",
    ):
        read_wands(write_wands(tmp_path / "WANDS", labels=label_csv(rows)))


def test_unknown_query_ids_are_counted(tmp_path):
    rows = [*LABEL_ROWS, (6, 9, 0, "Exact")]
    with pytest.raises(LogValidationError, match="'query_id': query ids not in query.csv \\(1 row"):
        read_wands(write_wands(tmp_path / "WANDS", labels=label_csv(rows)))


def test_numbers_that_are_not_numbers(tmp_path):
    products = [PRODUCT_HEADER, *PRODUCT_ROWS[:-1], PRODUCT_ROWS[-1].replace("4.0", "four")]
    with pytest.raises(
        LogValidationError, match="column 'average_rating': values that are not numbers \\(1 row"
    ):
        read_wands(write_wands(tmp_path / "WANDS", products=products))


def test_an_unreadable_file(tmp_path):
    folder = write_wands(tmp_path / "WANDS", labels="")
    with pytest.raises(LogValidationError, match="label.csv: unreadable as tab-separated text"):
        read_wands(folder)
