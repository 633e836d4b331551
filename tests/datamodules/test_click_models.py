"""Click models: sampled clicks agree with each model's own probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.click_models import attraction, simulate_clicks

GRADES = np.array([3, 0, 4, 1, 2, 0, 4, 2])  # one list, shown in this order
SESSIONS = 200_000


def _many(model: str, **settings):
    rng = np.random.default_rng(0)
    grades = np.tile(GRADES, (SESSIONS, 1))
    return simulate_clicks(rng, grades, max_grade=4, model=model, **settings)


@pytest.mark.parametrize("model", ["pbm", "cascade", "dbn"])
def test_click_rates_are_examination_times_attraction(model):
    click, examination = _many(model, noise=0.1, continuation=0.8, satisfaction=0.7)
    expected = examination[0] * attraction(GRADES, 4, 0.1)
    assert np.allclose(examination, examination[0])  # same list, same examination
    assert np.abs(click.mean(axis=0) - expected).max() < 0.005


def test_cascade_stops_at_the_first_click():
    click, examination = _many("cascade", noise=0.1)
    assert click.sum(axis=1).max() == 1
    # Examination of position p: every item above it was examined and not clicked.
    above = np.cumprod(1.0 - attraction(GRADES, 4, 0.1))
    assert np.allclose(examination[0, 1:], above[:-1])


def test_dbn_examination_follows_continuation_and_satisfaction():
    _, examination = _many("dbn", noise=0.0, continuation=0.5, satisfaction=1.0)
    # Position 2 follows a grade-3 item: clicked and satisfied with 7/15 * 7/15.
    assert examination[0, 1] == pytest.approx(0.5 * (1 - (7 / 15) ** 2))
    click, _ = _many("dbn", noise=0.0, continuation=1.0, satisfaction=0.0)
    pbm_like = attraction(GRADES, 4, 0.0)  # never satisfied, always continues: all examined
    assert np.abs(click.mean(axis=0) - pbm_like).max() < 0.005


def test_noise_is_the_click_rate_of_irrelevant_items():
    click, examination = _many("pbm", noise=0.2, position_bias=0.0)
    assert np.all(examination == 1.0)
    assert click[:, GRADES == 0].mean() == pytest.approx(0.2, abs=0.005)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model": "ubm"}, "unknown click_model 'ubm'"),
        ({"model": "dbn", "continuation": 1.5}, r"dbn_continuation must lie in \[0, 1\]"),
        ({"model": "dbn", "satisfaction": -0.1}, r"dbn_satisfaction must lie in \[0, 1\]"),
        ({"noise": 2.0}, r"click_noise must lie in \[0, 1\]"),
    ],
)
def test_parameters_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        simulate_clicks(np.random.default_rng(0), GRADES[None, :], 4, **settings)
