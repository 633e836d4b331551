"""Amazon Shopping Queries (ESCI): the two Parquet files, the judged tables, the options and
the dataset's own defaults in the settings."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from benchmarks.cli import main
from benchmarks.config import load_spec
from datamodules import SearchLogDataModule
from datamodules.esci import EXAMPLES_FILE, PRODUCTS_FILE, read_esci
from datamodules.sources import EsciSource, make_source
from datamodules.tables import LogValidationError

# (query_id, query, product_id, locale, label, small, large, split), in file order: the
# queries interleave, as rows of one query need not be adjacent.
EXAMPLES = [
    (1, "usb c cable", "B01", "us", "E", 1, 1, "train"),
    (4, "phone case", "B01", "us", "C", 1, 1, "test"),
    (1, "usb c cable", "B02", "us", "S", 1, 1, "train"),
    (2, "cable usb", "B01", "es", "E", 1, 1, "train"),
    (1, "usb c cable", "B03", "us", "I", 1, 1, "train"),
    (3, "charger", "B04", "us", "C", 0, 1, "test"),
    (4, "phone case", "B05", "us", "E", 1, 1, "test"),
    (4, "phone case", "B06", "us", "E", 1, 1, "test"),
]
# (product_id, title, description, bullet points, brand, color, locale)
PRODUCTS = [
    ("B01", "USB-C cable 2 m", "A braided cable", "fast", "Anker", "black", "us"),
    ("B01", "Cable USB-C 2 m", "Un cable", "rápido", "Anker", "negro", "es"),
    ("B02", "USB-C cable 1 m", None, None, "", "white", "us"),
    ("B03", "Garden hose", "Green", None, "Hoses Inc", None, "us"),
    ("B04", "Wall charger", "20 W", None, "Anker", "white", "us"),
    ("B05", "   ", "no title", None, None, None, "us"),
    ("B06", "Phone case, clear", "Slim", None, "Spigen", "clear", "us"),
]


def write_esci(folder, examples=EXAMPLES, products=PRODUCTS):
    """The two files as published: examples and products, one row per product and locale."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["query_id", "query", "product_id", "product_locale", "esci_label"]
    columns += ["small_version", "large_version", "split"]
    table = pl.DataFrame(examples, schema=columns, orient="row")
    table.insert_column(0, pl.Series("example_id", range(len(examples)))).write_parquet(
        folder / EXAMPLES_FILE
    )
    columns = ["product_id", "product_title", "product_description", "product_bullet_point"]
    columns += ["product_brand", "product_color", "product_locale"]
    pl.DataFrame(products, schema=columns, orient="row").write_parquet(folder / PRODUCTS_FILE)
    return folder


def write_generated_esci(folder, n_queries=30, per_query=6, seed=0):
    """Queries whose exact products share their words: a ranker can learn the labels."""
    rng = np.random.default_rng(seed)
    nouns = ["lamp", "chair", "cable", "mug", "shoe", "desk", "kettle", "towel", "rug", "fan"]
    examples, products = [], []
    for q in range(n_queries):
        noun, colour = nouns[q % len(nouns)], f"shade{q}"
        split = "test" if q % 3 == 0 else "train"
        for i in range(per_query):
            label = rng.choice(list("ESCI"))
            words = {"E": f"{colour} {noun}", "S": f"{noun}", "C": f"{noun} spare part"}
            title = words.get(label, f"garden item {rng.integers(1000)}") + f" model {i}"
            pid = f"P{q:02d}{i}"
            examples.append((q, f"{colour} {noun}", pid, "us", label, 1, 1, split))
            products.append((pid, title, f"about {title}", None, f"brand{i}", "red", "us"))
    return write_esci(folder, examples, products)


def test_read_esci_gives_the_judged_tables_of_a_locale_and_version(tmp_path):
    notes = []
    log = read_esci(write_esci(tmp_path / "esci"), notes=notes)
    impressions = log.impressions
    assert impressions.columns == [
        "request_id",
        "query",
        "product_id",
        "position",
        "judgment",
        "dataset_split",
    ]
    assert impressions["request_id"].to_list() == ["1", "4", "1", "1", "4"]
    assert impressions["product_id"].to_list() == ["B01", "B01", "B02", "B03", "B06"]
    # B05 has no title: it is dropped with its pair, so query 4's B06 comes second.
    assert impressions["position"].to_list() == [1, 1, 2, 3, 2]
    assert impressions["judgment"].to_list() == [1.0, 0.01, 0.1, 0.0, 1.0]
    assert impressions["dataset_split"].to_list() == ["train", "test", "train", "train", "test"]
    assert notes == [
        "1 product without a title dropped",
        "1 judged pair whose product has no titled catalog entry dropped",
    ]
    products = log.products.sort("product_id")
    assert products.columns == ["product_id", "title", "description", "brand", "color"]
    assert products["product_id"].to_list() == ["B01", "B02", "B03", "B06"]
    assert products["title"][0] == "USB-C cable 2 m"  # the us listing, not the es one
    assert products["brand"].to_list() == ["Anker", None, "Hoses Inc", "Spigen"]  # "" is missing
    assert products["description"][1] is None


def test_locale_and_version_choose_the_rows(tmp_path):
    folder = write_esci(tmp_path / "esci")
    spanish = read_esci(folder, locale="es")
    assert spanish.impressions["request_id"].to_list() == ["2"]
    assert spanish.products["title"].to_list() == ["Cable USB-C 2 m"]
    large = read_esci(folder, version="large").impressions
    assert sorted(set(large["request_id"])) == ["1", "3", "4"]  # query 3 is large only
    assert read_esci(folder, version="all").impressions.height == large.height


def test_gains_replace_the_papers_per_label(tmp_path):
    log = read_esci(write_esci(tmp_path / "esci"), gains={"S": 2, "C": 0.5})
    assert log.impressions["judgment"].to_list() == [1.0, 0.5, 2.0, 0.0, 1.0]


def test_the_datamodule_keeps_the_given_split(tmp_path):
    datamodule = SearchLogDataModule(EsciSource(str(write_generated_esci(tmp_path / "esci"))))
    datamodule.setup()
    assert datamodule.spec.tasks == ("relevance",)
    assert {"brand", "color"} <= set(datamodule.spec.categorical)
    test_ids = set(datamodule.arrays("test").request_id.tolist())
    assert test_ids == {str(q) for q in range(0, 30, 3)}
    assert [datamodule.arrays(s).n_groups for s in ("train", "val", "test")] == [18, 2, 10]


def test_rankbench_bench_runs_on_esci(tmp_path, capsys):
    folder = write_generated_esci(tmp_path / "esci")
    out = tmp_path / "results"
    argv = ["bench", "--dataset", "esci", "--data", str(folder), "--models", "xgboost"]
    argv += ["--seeds", "0", "--out", str(out), "--quiet", "--wandb", "disabled"]
    argv += ["--set", "model_config.xgboost.n_estimators=20"]
    assert main(argv) == 0, capsys.readouterr().err
    results = out / "esci-us-small"
    assert "judged pairs" in (results / "summary.md").read_text()
    record = json.loads((results / "runs" / "xgboost-seed0.json").read_text())
    assert record["config"]["metrics"]["gain"] == "linear"
    assert record["config"]["dataset"]["gains"] == {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}


# --------------------------------------------------------------------------- settings


def test_esci_makes_the_metric_gain_linear_unless_told_otherwise(tmp_path):
    assert load_spec(overrides={"dataset": "esci"}).metrics.gain == "linear"
    assert load_spec().metrics.gain == "exponential"  # other datasets keep theirs
    user_file = tmp_path / "mine.yaml"
    user_file.write_text("dataset: esci\nmetrics: {gain: exponential}\n")
    assert load_spec(user_file).metrics.gain == "exponential"  # the file wins
    user_file.write_text("dataset: esci\n")
    assert load_spec(user_file).metrics.gain == "linear"  # the file names esci
    config = load_spec(user_file, {"dataset": "esci"}, ["metrics.gain=exponential"])
    assert config.metrics.gain == "exponential"  # --set wins over all
    # The dataset's defaults follow the dataset finally chosen.
    assert load_spec(user_file, {"dataset": "simulator"}).metrics.gain == "exponential"


def test_dataset_options_name_the_benchmark_and_reach_the_source(tmp_path):
    config = load_spec(overrides={"dataset": "esci", "data_path": str(tmp_path)})
    assert config.name == "esci-us-small"
    config = load_spec(
        overrides={"dataset": "esci", "data_path": str(tmp_path)},
        assignments=["dataset_options.locale=jp", "dataset_options.gains={S: 0.5}"],
    )
    assert config.name == "esci-jp-small"
    source = make_source("esci", path=str(tmp_path), options=config.dataset_options)
    assert (source.locale, source.version) == ("jp", "small")
    assert source.describe()["gains"] == {"E": 1.0, "S": 0.5, "C": 0.01, "I": 0.0}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("dataset_options.region=us", "unknown dataset_options for esci: region; expected locale"),
        ("dataset_options.locale=fr", "esci: unknown locale 'fr'; expected one of us, es, jp"),
        ("dataset_options.version=tiny", "esci: unknown version 'tiny'"),
        ("dataset_options.gains={X: 1}", "esci: gains for unknown label\\(s\\) X"),
        ("dataset_options.gains={E: -1}", "esci: the gain of E must be a number >= 0"),
    ],
)
def test_bad_options_are_one_line_errors(assignment, message):
    with pytest.raises(ValueError, match=message):
        load_spec(overrides={"dataset": "esci"}, assignments=[assignment])


def test_a_dataset_without_options_refuses_them():
    with pytest.raises(ValueError, match="dataset 'simulator' takes no dataset_options"):
        load_spec(assignments=["dataset_options.locale=us"])


# --------------------------------------------------------------------------- bad files


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(LogValidationError, match="ESCI folder not found"):
        read_esci(tmp_path / "nowhere")
    folder = write_esci(tmp_path / "esci")
    (folder / PRODUCTS_FILE).unlink()
    with pytest.raises(LogValidationError, match=f"{PRODUCTS_FILE}: ESCI file not found"):
        read_esci(folder)


def test_the_clone_holding_the_dataset_folder_is_accepted(tmp_path):
    write_esci(tmp_path / "esci-data" / "shopping_queries_dataset")
    assert read_esci(tmp_path / "esci-data").impressions.height == 5


def test_a_git_lfs_pointer_is_named(tmp_path):
    folder = write_esci(tmp_path / "esci")
    (folder / EXAMPLES_FILE).write_text("version https://git-lfs.github.com/spec/v1\noid x\n")
    with pytest.raises(LogValidationError, match="not a Parquet file \\(a Git LFS pointer"):
        read_esci(folder)


def test_a_missing_column(tmp_path):
    path = write_esci(tmp_path / "esci") / EXAMPLES_FILE
    pl.read_parquet(path).drop("esci_label").write_parquet(path)
    with pytest.raises(LogValidationError, match="column 'esci_label': required column is missing"):
        read_esci(path.parent)


def test_unknown_labels_are_counted(tmp_path):
    rows = [(*row[:4], "X" if row[2] == "B02" else row[4], *row[5:]) for row in EXAMPLES]
    rows.append((1, "usb c cable", "B04", "us", "exact", 1, 1, "train"))
    with pytest.raises(
        LogValidationError,
        match="'esci_label': unknown labels \\(X, exact\\); expected E, S, C, I \\(2 rows\\)",
    ):
        read_esci(write_esci(tmp_path / "esci", rows))


def test_unknown_split_values_are_counted(tmp_path):
    rows = [(*row[:7], "dev") for row in EXAMPLES]
    with pytest.raises(LogValidationError, match="column 'split': split must be train or test"):
        read_esci(write_esci(tmp_path / "esci", rows))


def test_a_locale_without_rows(tmp_path):
    rows = [row for row in EXAMPLES if row[3] == "us"]
    with pytest.raises(LogValidationError, match="no small examples for locale 'es'"):
        read_esci(write_esci(tmp_path / "esci", rows), locale="es")


def test_the_dataset_needs_its_folder():
    with pytest.raises(ValueError, match="dataset 'esci' needs the folder"):
        make_source("esci")
