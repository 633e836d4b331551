"""The DataModule: features without leakage, arrays and batches that keep query groups whole."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from datamodules import DataConfig, SearchLog, SearchLogDataModule, Truth
from datamodules.features import out_of_fold_sums
from datamodules.labels import LabelConfig
from labeling.sampling import SamplingConfig
from tests.conftest import HandmadeSource, make_handmade_log

FEATURE_ARRAYS = ("numeric", "categorical", "text_ids")


def _datamodule(log: SearchLog) -> SearchLogDataModule:
    datamodule = SearchLogDataModule(HandmadeSource(log), DataConfig())
    datamodule.setup()
    return datamodule


def _features(datamodule) -> dict[str, np.ndarray]:
    return {
        f"{split}/{name}": getattr(datamodule.arrays(split), name)
        for split in ("train", "val", "test")
        for name in FEATURE_ARRAYS
    }


@pytest.fixture(scope="module")
def log() -> SearchLog:
    return make_handmade_log(n_requests=300)


@pytest.fixture(scope="module")
def datamodule(log) -> SearchLogDataModule:
    return _datamodule(log)


def test_spec_describes_the_arrays(datamodule):
    spec = datamodule.spec
    train = datamodule.arrays("train")
    assert train.numeric.shape[1] == len(spec.numeric)
    assert train.categorical.shape[1] == len(spec.categorical) == len(spec.cardinalities)
    for column, cardinality in zip(train.categorical.T, spec.cardinalities, strict=True):
        assert column.min() >= 0 and column.max() < cardinality
    assert train.text_ids.max() < len(datamodule.texts)
    assert set(spec.tasks) == {"relevance", "click", "add_to_cart", "purchase"}
    assert "true_relevance" in spec.eval_labels and "true_relevance" not in spec.tasks
    assert np.isfinite(train.numeric).all()


def test_no_truth_reaches_the_features(log, datamodule):
    names = set(datamodule.spec.numeric) | set(datamodule.spec.categorical)
    assert not any("true" in n or "examination" in n for n in names)
    shuffled = log.truth.relevance.with_columns(
        pl.col("true_relevance").shuffle(seed=1).alias("true_relevance")
    )
    other = _datamodule(
        SearchLog(log.products, log.impressions, log.users, Truth(shuffled, log.truth.examination))
    )
    for key, values in _features(datamodule).items():
        np.testing.assert_array_equal(values, _features(other)[key], err_msg=key)


def test_no_test_period_behaviour_reaches_the_features(log, datamodule):
    held_out = (
        datamodule.rows("val")["request_id"].to_list()
        + datamodule.rows("test")["request_id"].to_list()
    )
    flipped = log.impressions.with_columns(
        pl.when(pl.col("request_id").is_in(held_out))
        .then(1 - pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in ("click", "add_to_cart", "purchase")
    )
    other = _datamodule(SearchLog(log.products, flipped, log.users, log.truth))
    assert other.split_hash == datamodule.split_hash
    for key, values in _features(datamodule).items():
        np.testing.assert_allclose(values, _features(other)[key], err_msg=key)
    assert not np.array_equal(
        other.arrays("test").labels["click"], datamodule.arrays("test").labels["click"]
    )


def test_out_of_fold_sums_leave_out_the_rows_own_fold():
    rows = pl.DataFrame(
        {
            "key": ["a", "a", "a", "a", "b"],
            "split": ["train", "train", "train", "test", "train"],
            "_fold": [0, 0, 1, -1, 1],
            "click": [1, 0, 1, 1, 1],
        }
    )
    sums = out_of_fold_sums(rows, ["key"], ["click"])
    # Train rows see only the other fold's rows, scaled by K/(K-1) = 2 to stand for the whole
    # training part; the test row sees all training rows of its key.
    assert sums["n"].to_list() == [2, 2, 4, 3, 0]
    assert sums["click"].to_list() == [2, 2, 2, 2, 0]


def test_behavioural_relevance_label(log):
    config = DataConfig(labels=LabelConfig(relevance="behavioural"))
    datamodule = SearchLogDataModule(HandmadeSource(log), config)
    datamodule.setup()
    labels = datamodule.arrays("train").labels
    expected = np.select(
        [labels["purchase"] > 0, labels["add_to_cart"] > 0, labels["click"] > 0], [3, 2, 1], 0
    )
    np.testing.assert_array_equal(labels["relevance"], expected)


def test_derived_training_labels_come_from_the_training_part_only(log, datamodule):
    assert set(np.unique(datamodule.arrays("train").labels["relevance"])) <= {0, 1, 2, 3, 4}
    held_out = datamodule.rows("test")["request_id"].to_list()
    flipped = log.impressions.with_columns(
        pl.when(pl.col("request_id").is_in(held_out))
        .then(1 - pl.col("click"))
        .otherwise(pl.col("click"))
        .alias("click")
    )
    other = _datamodule(SearchLog(log.products, flipped, log.users, log.truth))
    for split in ("train", "val"):  # early stopping reads val: no test clicks there either
        np.testing.assert_array_equal(
            other.arrays(split).labels["relevance"], datamodule.arrays(split).labels["relevance"]
        )
    assert not np.array_equal(
        other.arrays("test").labels["relevance"], datamodule.arrays("test").labels["relevance"]
    )


def test_the_truth_is_a_test_label_only(datamodule):
    assert "true_relevance" in datamodule.arrays("test").labels
    for split in ("train", "val"):
        assert "true_relevance" not in datamodule.arrays(split).labels
    batch = next(iter(datamodule.train_dataloader()))
    assert "true_relevance" not in batch.labels


def test_a_nan_in_the_catalog_does_not_blank_a_feature(log):
    prices = log.products["price"].to_numpy().copy()
    prices[0] = np.nan
    products = log.products.with_columns(price=pl.Series(prices))
    other = _datamodule(SearchLog(products, log.impressions, log.users, log.truth))
    column = other.spec.numeric.index("price")
    assert np.std(other.arrays("train").numeric[:, column]) > 0.5


def test_the_frozen_encoders_similarity_is_a_feature(datamodule):
    column = datamodule.spec.numeric.index("query_title_similarity")
    assert np.std(datamodule.arrays("train").numeric[:, column]) > 0


def test_behaviour_aware_sampling_thins_only_the_training_rows(log, datamodule):
    sampling = SamplingConfig(enabled=True, click=1.0, nothing=0.0, negatives_per_request=1)
    config = DataConfig(labels=LabelConfig(sampling=sampling))
    sampled = SearchLogDataModule(HandmadeSource(log), config)
    sampled.setup()
    train = sampled.arrays("train")
    assert train.n_rows < datamodule.arrays("train").n_rows
    assert (np.bincount(train.group, weights=train.labels["click"]) > 0).all()
    assert sampled.arrays("test").n_rows == datamodule.arrays("test").n_rows


def test_groups_are_whole_and_not_in_logged_order(datamodule):
    in_logged_order = 0
    for split in ("train", "val", "test"):
        arrays = datamodule.arrays(split)
        offsets = arrays.offsets
        for g in range(arrays.n_groups):
            rows = slice(offsets[g], offsets[g + 1])
            assert len(set(arrays.request_id[rows])) == 1
            in_logged_order += bool((np.diff(arrays.position[rows]) > 0).all())
        assert len(set(arrays.request_id)) == arrays.n_groups
    # Random orders of 5 items are sorted 1 time in 120: a handful at most of 300 requests.
    assert in_logged_order < 15


def test_dataloader_serves_padded_query_groups(datamodule):
    arrays = datamodule.arrays("val")
    batches = list(datamodule.val_dataloader())
    assert sum(b.numeric.shape[0] for b in batches) == arrays.n_groups
    batch = batches[0]
    assert batch.numeric.dtype == torch.float32 and batch.categorical.dtype == torch.int64
    rows = batch.rows[batch.mask].numpy()
    np.testing.assert_array_equal(batch.numeric[batch.mask].numpy(), arrays.numeric[rows])
    np.testing.assert_array_equal(
        batch.labels["click"][batch.mask].numpy(), arrays.labels["click"][rows]
    )


def test_arrays_before_setup_and_unknown_split():
    datamodule = SearchLogDataModule(HandmadeSource())
    with pytest.raises(RuntimeError, match="setup"):
        datamodule.arrays("train")
    datamodule.setup()
    with pytest.raises(ValueError, match="unknown split"):
        datamodule.arrays("holdout")


def test_fingerprint_covers_the_arrays_models_read(log):
    first = SearchLogDataModule(HandmadeSource(log))
    first.setup()
    second = SearchLogDataModule(HandmadeSource(log))
    second.setup()
    assert first.fingerprint == second.fingerprint
    second._fingerprint = None
    second.arrays("train").numeric[0, 0] += 1.0  # the same tables, different features
    assert first.fingerprint != second.fingerprint
