import polars as pl
import pytest

from labeling.sampling import SamplingConfig, request_strata, sample_mask
from tests.conftest import make_handmade_log


@pytest.fixture(scope="module")
def impressions():
    return make_handmade_log(n_requests=400).impressions


def test_strata_are_the_deepest_behaviour(impressions):
    strata = request_strata(impressions).join(
        impressions.group_by("request_id").agg(pl.col("click", "add_to_cart", "purchase").max()),
        on="request_id",
    )
    for row in strata.iter_rows(named=True):
        expected = (
            "purchase"
            if row["purchase"]
            else "add_to_cart"
            if row["add_to_cart"]
            else "click"
            if row["click"]
            else "nothing"
        )
        assert row["stratum"] == expected


def test_rates_select_whole_requests_by_stratum(impressions):
    config = SamplingConfig(enabled=True, purchase=1.0, add_to_cart=1.0, click=0.0, nothing=0.0)
    kept = impressions.filter(sample_mask(impressions, config))
    strata = request_strata(impressions)
    expected = strata.filter(pl.col("stratum").is_in(["purchase", "add_to_cart"]))
    assert set(kept["request_id"]) == set(expected["request_id"])
    assert kept.group_by("request_id").len()["len"].min() == 5  # whole requests


def test_negatives_per_request_keeps_every_positive(impressions):
    config = SamplingConfig(enabled=True, nothing=1.0, negatives_per_request=1)
    mask = sample_mask(impressions, config)
    kept = impressions.filter(mask)
    assert kept["click"].sum() == impressions["click"].sum()
    negatives = kept.filter(pl.col("click") == 0).group_by("request_id").len()
    assert negatives["len"].max() == 1


def test_disabled_keeps_everything_and_same_seed_same_sample(impressions):
    assert sample_mask(impressions, SamplingConfig()).all()
    config = SamplingConfig(enabled=True, click=0.5, nothing=0.5, seed=3)
    assert sample_mask(impressions, config).equals(sample_mask(impressions, config))
    other_seed = SamplingConfig(enabled=True, click=0.5, nothing=0.5, seed=4)
    assert not sample_mask(impressions, config).equals(sample_mask(impressions, other_seed))


def test_bad_rates():
    with pytest.raises(ValueError, match="sampling.click"):
        SamplingConfig(click=1.5)
