"""The statistics under every table: Holm-Bonferroni over a column's comparisons, and the
bootstrap interval of each mean over queries."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wilcoxon

from benchmarks.report import (
    Column,
    ModelResult,
    by_unit,
    holm,
    paired_test,
    query_interval,
    summarise,
    to_markdown,
)


def test_holm_by_hand():
    adjusted = holm(pl.Series("p", [0.01, 0.04, 0.03, None]))
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> made non-decreasing.
    assert adjusted.to_list()[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert adjusted[3] is None
    assert holm(pl.Series("p", [0.5, 0.6])).to_list() == [1.0, 1.0]


def _result(name: str, values: np.ndarray) -> ModelResult:
    per_query = pl.DataFrame({"request_id": [str(i) for i in range(values.size)], "m": values})
    return ModelResult(name, False, {"m": [float(values.mean())]}, per_query, [1.0], [1.0])


def test_a_star_needs_the_corrected_p_value():
    rng = np.random.default_rng(0)
    best = rng.normal(0.60, 0.1, size=60)
    # Four rows a little below the best; one of them (raw p 0.028, corrected 0.057) loses
    # its star to the correction.
    rows = [_result("best", best)]
    for i in range(4):
        rows.append(_result(f"m{i}", best - 0.04 + rng.normal(0, 0.15, size=60)))
    table = summarise(rows, [Column("m", "M")], alpha=0.05)
    raw, corrected = table["m:p_raw"].to_list()[1:], table["m:p"].to_list()[1:]
    assert any(p < 0.05 for p in raw)
    assert all(c >= r for c, r in zip(corrected, raw, strict=True))
    assert sorted(corrected) == pytest.approx(sorted(holm(pl.Series(raw)).to_list()))
    lines = to_markdown(table, [Column("m", "M")]).splitlines()[2:]
    for line, c in zip(lines[1:], corrected, strict=True):
        assert line.endswith("* | 1.0 | 1 |") == (c < 0.05)  # the star follows Holm
    assert any(r < 0.05 <= c for r, c in zip(raw, corrected, strict=True))


def test_the_bootstrap_interval_holds_the_mean_is_seeded_and_narrows_with_queries():
    rng = np.random.default_rng(1)
    few = pl.DataFrame({"request_id": list(map(str, range(40))), "m": rng.random(40)})
    many = pl.DataFrame({"request_id": list(map(str, range(4000))), "m": rng.random(4000)})
    low, high = query_interval(few, "m")
    assert low < few["m"].mean() < high
    assert query_interval(few, "m") == (low, high)  # the same bytes in every table
    many_low, many_high = query_interval(many, "m")
    assert many_high - many_low < (high - low) / 5
    assert query_interval(few.with_columns(m=pl.lit(0.5)), "m") == (0.5, 0.5)
    assert query_interval(few, "other") == (None, None)


def test_repeated_queries_are_resampled_as_one_unit_each():
    # Six requests of two query texts: the test and the interval see two units, each the
    # mean over its requests, not six independent queries.
    ids = [str(i) for i in range(6)]
    units = pl.DataFrame({"request_id": ids, "unit": [0, 0, 0, 1, 1, 1]})
    a = pl.DataFrame({"request_id": ids, "m": [0.9, 0.8, 0.7, 0.4, 0.5, 0.6]})
    merged = by_unit(a, "m", units)
    assert merged["request_id"].to_list() == [0, 1]
    assert merged["m"].to_list() == pytest.approx([0.8, 0.5])
    rows = [
        ModelResult("a", False, {"m": [0.65]}, a, [1.0], [1.0]),
        ModelResult("b", False, {"m": [0.55]}, a.with_columns(pl.col("m") - 0.1), [1.0], [1.0]),
    ]
    per_unit = summarise(rows, [Column("m", "M")], units=units)
    per_request = summarise(rows, [Column("m", "M")])
    assert (per_unit["m:ci_low"][0], per_unit["m:ci_high"][0]) == pytest.approx((0.5, 0.8))
    assert per_request["m:ci_low"][0] > 0.5  # six requests look like more evidence
    assert per_unit["m:p_raw"][1] == paired_test(
        by_unit(a, "m", units), by_unit(rows[1].per_query, "m", units), "m"
    )


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40),
    unit_of=st.lists(st.integers(0, 6), min_size=40, max_size=40),
    by_text=st.booleans(),
)
def test_every_mean_lies_inside_its_interval(values, unit_of, by_text):
    # The mean the table shows is over requests; with repeated queries the interval resamples
    # whole query texts, of any mix of sizes, and must still be an interval of that mean.
    ids = [str(i) for i in range(len(values))]
    per_query = pl.DataFrame({"request_id": ids, "m": values})
    units = pl.DataFrame({"request_id": ids, "unit": unit_of[: len(values)]}) if by_text else None
    row = ModelResult("a", False, {"m": [float(np.mean(values))]}, per_query, [1.0], [1.0])
    table = summarise([row], [Column("m", "M")], units=units)
    low, high, mean = table["m:ci_low"][0], table["m:ci_high"][0], table["m:mean"][0]
    assert low <= mean <= high


def test_requests_of_unequal_texts_are_weighted_as_requests():
    # Ten texts of ten requests each at 0.2, thirty texts of one request each at 0.9: the mean
    # over requests is 0.3615; the texts' own means average 0.725. The interval is of the
    # former, resampling texts.
    values = [0.2] * 100 + [0.9] * 30
    ids = [str(i) for i in range(130)]
    units = pl.DataFrame(
        {"request_id": ids, "unit": [i // 10 for i in range(100)] + list(range(10, 40))}
    )
    low, high = query_interval(pl.DataFrame({"request_id": ids, "m": values}), "m", units)
    assert low < 100 * 0.2 / 130 + 30 * 0.9 / 130 < high < 0.6


def test_a_stale_record_with_the_highest_mean_is_neither_bold_nor_the_baseline():
    rng = np.random.default_rng(4)
    best = rng.uniform(0.5, 0.7, 50)
    rows = [_result("fresh", best), _result("other", best - 0.05)]
    stale = _result("old", best + 0.2)
    stale.stale = True
    table = summarise([*rows, stale], [Column("m", "M")])
    assert table["m:p_raw"].to_list()[0] is None  # "fresh" is the baseline
    assert table["m:p_raw"].to_list()[1] is not None and table["m:p_raw"][2] is None
    lines = to_markdown(table, [Column("m", "M")]).splitlines()[2:]
    assert lines[0].startswith("| fresh | **") and "**" not in lines[2]


def test_the_paired_test_pairs_by_request_id_not_by_row():
    rng = np.random.default_rng(5)
    ids = [f"r{i}" for i in range(60)]
    a = pl.DataFrame({"request_id": ids, "m": rng.uniform(0, 1, 60)})
    b = a.with_columns(pl.col("m") - rng.uniform(0.0, 0.05, 60))
    shuffled = b.sample(fraction=1.0, shuffle=True, seed=1)
    assert paired_test(a, shuffled, "m") == paired_test(a, b, "m")
    assert paired_test(a, b, "m") == pytest.approx(wilcoxon(a["m"], b["m"]).pvalue)


def test_reference_rows_are_a_holm_family_of_their_own():
    rng = np.random.default_rng(6)
    best = rng.uniform(0.4, 0.8, 60)
    rows = [_result("best", best), _result("m1", best - 0.03 + rng.normal(0, 0.1, 60))]
    references = [
        _result(f"ref: r{i}", best - 0.02 * (i + 1) + rng.normal(0, 0.1, 60)) for i in range(3)
    ]
    for reference in references:
        reference.reference = True
    table = summarise([*rows, *references], [Column("m", "M")])
    raw = table["m:p_raw"].to_list()
    assert table["m:p"][1] == pytest.approx(raw[1])  # the one model comparison, alone
    assert table["m:p"].to_list()[2:] == pytest.approx(holm(pl.Series(raw[2:])).to_list())
