"""Bad input: every case of DESIGN.md ends in one clear error naming file, column and rows."""

from __future__ import annotations

import polars as pl
import pytest

from datamodules.loaders import read_log_dir
from datamodules.tables import LogValidationError, SearchLog, validate_log
from tests.conftest import make_handmade_log


def _with_impressions(log: SearchLog, impressions: pl.DataFrame) -> SearchLog:
    return SearchLog(
        log.products,
        impressions,
        log.users,
        log.truth,
        {"impressions": "clicks.csv", "products": "catalog.csv"},
    )


def _error(log: SearchLog) -> LogValidationError:
    with pytest.raises(LogValidationError) as caught:
        validate_log(log)
    message = str(caught.value)
    assert "\n" not in message  # one line for the user
    return caught.value


def test_a_valid_log_passes_and_behaviour_becomes_int8(handmade_log):
    log = validate_log(handmade_log)
    assert log.impressions["click"].dtype == pl.Int8
    assert log.impressions["position"].dtype == pl.Int32


def test_missing_column(handmade_log):
    error = _error(_with_impressions(handmade_log, handmade_log.impressions.drop("click")))
    assert error.column == "click" and "missing" in str(error) and "clicks.csv" in str(error)


def test_mistyped_column(handmade_log):
    bad = handmade_log.impressions.with_columns(pl.col("position").cast(pl.String))
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "position" and "integers" in str(error)
    assert error.rows == bad.height


def test_position_below_one(handmade_log):
    bad = handmade_log.impressions.with_columns(pl.col("position") - 1)  # 0-based
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "position" and "1-based" in str(error)
    assert error.rows == handmade_log.impressions["request_id"].n_unique()


def test_unknown_product(handmade_log):
    bad = handmade_log.impressions.with_columns(
        pl.when(pl.col("request_id") < 3)
        .then(999_999)
        .otherwise(pl.col("product_id"))
        .alias("product_id")
    )
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "product_id" and "catalog" in str(error)
    assert error.rows == 3 * 5


def test_duplicate_request_position(handmade_log):
    bad = pl.concat([handmade_log.impressions, handmade_log.impressions.head(2)])
    error = _error(_with_impressions(handmade_log, bad))
    assert "duplicate (request_id, position)" in str(error) and error.rows == 4


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_query_text(handmade_log, empty):
    bad = handmade_log.impressions.with_columns(
        pl.when(pl.col("request_id") == 0)
        .then(pl.lit(empty))
        .otherwise(pl.col("query"))
        .alias("query")
    )
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "query" and "empty text" in str(error) and error.rows == 5


def test_nan_in_required_column(handmade_log):
    bad = handmade_log.impressions.with_columns(
        pl.when(pl.col("request_id") == 1)
        .then(float("nan"))
        .otherwise(pl.col("click").cast(pl.Float64))
        .alias("click")
    )
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "click" and "missing" in str(error) and error.rows == 5


def test_null_in_required_column(handmade_log):
    bad = handmade_log.impressions.with_columns(
        pl.when(pl.col("request_id") == 2)
        .then(None)
        .otherwise(pl.col("request_id"))
        .alias("request_id")
    )
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "request_id" and error.rows == 5


def test_behaviour_outside_zero_one(handmade_log):
    bad = handmade_log.impressions.with_columns(pl.col("click") * 2)
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == "click" and "0/1" in str(error)


def test_empty_impressions(handmade_log):
    error = _error(_with_impressions(handmade_log, handmade_log.impressions.clear()))
    assert "empty" in str(error)


def test_whole_number_floats_are_accepted_as_positions(handmade_log):
    floats = handmade_log.impressions.with_columns(pl.col("position").cast(pl.Float64))
    assert (
        validate_log(_with_impressions(handmade_log, floats)).impressions["position"].dtype
        == pl.Int32
    )


def test_errors_from_files_name_the_file(tmp_path):
    log = make_handmade_log()
    log.products.write_csv(tmp_path / "products.csv")
    log.impressions.drop("query").write_parquet(tmp_path / "impressions.parquet")
    with pytest.raises(LogValidationError, match=r"impressions\.parquet: column 'query'"):
        read_log_dir(tmp_path)


def test_empty_file_is_a_clear_error(tmp_path):
    make_handmade_log().products.write_csv(tmp_path / "products.csv")
    (tmp_path / "impressions.csv").write_text("")
    with pytest.raises(LogValidationError, match=r"impressions\.csv: the file is empty"):
        read_log_dir(tmp_path)


def test_missing_table_is_a_clear_error(tmp_path):
    make_handmade_log().products.write_csv(tmp_path / "products.csv")
    with pytest.raises(LogValidationError, match="no impressions table"):
        read_log_dir(tmp_path)


def test_a_valid_folder_round_trips(tmp_path):
    log = make_handmade_log()
    log.products.write_csv(tmp_path / "products.csv")
    log.users.write_csv(tmp_path / "users.csv")
    log.impressions.write_parquet(tmp_path / "impressions.parquet")
    loaded = read_log_dir(tmp_path)
    assert loaded.impressions.height == log.impressions.height
    assert loaded.source("impressions").endswith("impressions.parquet")


@pytest.mark.parametrize("column", ["split", "relevance", "true_relevance", "_fold"])
def test_reserved_column_names(handmade_log, column):
    bad = handmade_log.impressions.with_columns(pl.lit(1).alias(column))
    error = _error(_with_impressions(handmade_log, bad))
    assert error.column == column and "reserved" in str(error)


def test_a_catalog_column_may_not_shadow_an_impressions_column(handmade_log):
    products = handmade_log.products.with_columns(position=pl.lit(1))
    error = _error(SearchLog(products, handmade_log.impressions, handmade_log.users))
    assert error.column == "position" and "also an impressions column" in str(error)


def test_truth_files_are_validated(tmp_path):
    log = make_handmade_log()
    log.products.write_csv(tmp_path / "products.csv")
    log.impressions.write_parquet(tmp_path / "impressions.parquet")
    log.truth.relevance.drop("true_relevance").write_parquet(tmp_path / "truth_relevance.parquet")
    log.truth.examination.write_parquet(tmp_path / "truth_examination.parquet")
    with pytest.raises(
        LogValidationError, match="truth_relevance.parquet: column 'true_relevance'"
    ):
        read_log_dir(tmp_path)


def test_flags_stored_as_decimals_are_flags(handmade_log):
    import dataclasses

    impressions = handmade_log.impressions.with_columns(pl.col("click").cast(pl.Float64))
    log = validate_log(dataclasses.replace(handmade_log, impressions=impressions))
    assert log.impressions["click"].dtype == pl.Int8
    assert log.impressions["click"].to_list() == handmade_log.impressions["click"].to_list()
