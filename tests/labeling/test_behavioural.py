import polars as pl
import pytest

from labeling import behavioural_grade


def test_grade_is_the_deepest_funnel_step():
    impressions = pl.DataFrame(
        {
            "click": [0, 1, 1, 1, 0],
            "add_to_cart": [0, 0, 1, 1, 0],
            "purchase": [0, 0, 0, 1, 1],
        }
    )
    assert behavioural_grade(impressions).to_list() == [0, 1, 2, 3, 3]


def test_click_only_logs_have_two_grades():
    assert behavioural_grade(pl.DataFrame({"click": [0, 1]})).to_list() == [0, 1]


def test_needs_clicks():
    with pytest.raises(ValueError, match="click"):
        behavioural_grade(pl.DataFrame({"purchase": [0, 1]}))


def test_a_purchase_is_grade_3_even_without_carts_in_the_log():
    impressions = pl.DataFrame({"click": [0, 1, 1], "purchase": [0, 0, 1]})
    assert behavioural_grade(impressions).to_list() == [0, 1, 3]
