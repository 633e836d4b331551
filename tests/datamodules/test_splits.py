import numpy as np
import polars as pl
import pytest

from datamodules.splits import SplitConfig, assign_splits, split_hash
from tests.conftest import make_handmade_log


def test_every_request_is_in_exactly_one_part():
    impressions = make_handmade_log(n_requests=200).impressions
    assignment = assign_splits(impressions, SplitConfig())
    assert assignment["request_id"].is_unique().all()
    assert set(assignment["request_id"]) == set(impressions["request_id"])
    counts = assignment.group_by("split").len().sort("split")
    assert dict(counts.iter_rows()) == {"test": 20, "train": 160, "val": 20}


def test_same_seed_same_split_other_seed_other_split():
    impressions = make_handmade_log(n_requests=200).impressions
    first = assign_splits(impressions, SplitConfig(seed=1))
    again = assign_splits(
        impressions.sample(fraction=1.0, shuffle=True, seed=5), SplitConfig(seed=1)
    )
    other = assign_splits(impressions, SplitConfig(seed=2))
    assert split_hash(first) == split_hash(again)
    assert split_hash(first) != split_hash(other)


def test_time_split_puts_the_latest_requests_in_test():
    impressions = make_handmade_log(n_requests=100).impressions.with_columns(
        timestamp=pl.from_epoch(1_000_000 - pl.col("request_id") * 60, time_unit="s")
    )
    assignment = assign_splits(impressions, SplitConfig())  # auto -> by time
    times = (
        impressions.group_by("request_id")
        .agg(pl.col("timestamp").min())
        .join(assignment, on="request_id")
    )
    latest_train = times.filter(pl.col("split") == "train")["timestamp"].max()
    assert times.filter(pl.col("split") == "val")["timestamp"].min() >= latest_train
    assert (
        times.filter(pl.col("split") == "test")["timestamp"].min()
        >= times.filter(pl.col("split") == "val")["timestamp"].max()
    )


def test_time_split_without_timestamps_is_an_error():
    with pytest.raises(ValueError, match="timestamp"):
        assign_splits(make_handmade_log().impressions, SplitConfig(by="time"))


@pytest.mark.parametrize(
    "kwargs", [{"by": "day"}, {"val_fraction": 0}, {"test_fraction": 0.6, "val_fraction": 0.5}]
)
def test_bad_split_settings(kwargs):
    with pytest.raises(ValueError):
        SplitConfig(**kwargs)


def test_too_few_requests():
    impressions = make_handmade_log(n_requests=2).impressions
    with pytest.raises(ValueError, match="too few requests"):
        assign_splits(impressions, SplitConfig())


def test_hash_ignores_row_order():
    impressions = make_handmade_log(n_requests=50).impressions
    assignment = assign_splits(impressions, SplitConfig())
    assert split_hash(assignment) == split_hash(assignment[np.random.permutation(50)])
