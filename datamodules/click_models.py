"""Click models: how a simulated user examines a shown list and clicks, given true relevance.

Used by the simulator and by the semi-synthetic clicks on judged datasets, so both make
clicks the same way. Each model returns the sampled clicks and every row's true examination
probability (the chance its position was looked at, given the items above it), so the label
report can set estimated propensities beside the truth whichever model made the log.

- ``pbm``, the position-based model (Richardson et al. 2007; Craswell et al. 2008): position
  ``p`` is examined with probability ``(1 / p) ** position_bias``, independently of the items.
- ``cascade`` (Craswell et al., "An experimental comparison of click position-bias models",
  WSDM 2008): the user reads from the top and stops at the first click.
- ``dbn``, the dynamic Bayesian network model (Chapelle & Zhang, WWW 2009): after an item the
  user stops if they clicked it and it satisfied them, otherwise goes on to the next with
  probability ``continuation``. Satisfaction given a click grows with relevance:
  ``satisfaction * gain``. ``cascade`` is ``dbn`` with continuation 1 and satisfaction 1 on
  every clicked item.

In every model an examined item is clicked with its *attraction* :func:`attraction`:
``noise + (1 - noise) * gain``, ``gain = (2^grade - 1) / (2^max_grade - 1)``, so an
irrelevant item is clicked at the noise rate.
"""

from __future__ import annotations

import numpy as np

CLICK_MODELS = ("pbm", "cascade", "dbn")


def check_click_model(
    model: str, noise: float, position_bias: float, continuation: float, satisfaction: float
) -> None:
    """One line naming the setting when a click model's parameters are out of range."""
    if model not in CLICK_MODELS:
        raise ValueError(f"unknown click_model {model!r}; valid: {', '.join(CLICK_MODELS)}")
    for name, value in (
        ("click_noise", noise),
        ("dbn_continuation", continuation),
        ("dbn_satisfaction", satisfaction),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    if position_bias < 0:
        raise ValueError(f"position_bias must be >= 0, got {position_bias}")


def gain(grades: np.ndarray, max_grade: float) -> np.ndarray:
    """``(2^grade - 1) / (2^max_grade - 1)``: 0 for an irrelevant item, 1 for the best."""
    return (2.0 ** np.asarray(grades, dtype=np.float64) - 1.0) / (2.0**max_grade - 1.0)


def attraction(grades: np.ndarray, max_grade: float, noise: float) -> np.ndarray:
    """Probability that an examined item of each grade is clicked."""
    return noise + (1.0 - noise) * gain(grades, max_grade)


def pbm_examination(position_bias: float, n_positions: int) -> np.ndarray:
    """The position-based model's examination of positions 1..n: ``(1 / p) ** eta``."""
    return (1.0 / np.arange(1, n_positions + 1)) ** position_bias


def sequential_clicks(
    rng: np.random.Generator,
    attraction_shown: np.ndarray,
    satisfaction_shown: np.ndarray,
    continuation: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks of a top-down reader (``cascade`` and ``dbn``), one list per row.

    ``attraction_shown`` and ``satisfaction_shown`` are ``[lists, positions]`` in shown order.
    Returns the clicks (bool) and each row's examination probability given the items above
    it: ``prod over earlier q of continuation * (1 - attraction_q * satisfaction_q)``.
    """
    n, k = attraction_shown.shape
    stop_after = attraction_shown * satisfaction_shown  # P(click and satisfied) per item
    keep_going = continuation * (1.0 - stop_after)
    examination = np.ones((n, k), dtype=np.float64)
    examination[:, 1:] = np.cumprod(keep_going[:, :-1], axis=1)

    # The same draws for every model: one for the click, one for satisfaction, one for
    # continuing, per item, so a change of parameters changes the outcomes it should only.
    draws = rng.random((3, n, k))
    click = np.zeros((n, k), dtype=bool)
    reading = np.ones(n, dtype=bool)
    for p in range(k):
        click[:, p] = reading & (draws[0, :, p] < attraction_shown[:, p])
        satisfied = click[:, p] & (draws[1, :, p] < satisfaction_shown[:, p])
        reading = reading & ~satisfied & (draws[2, :, p] < continuation)
    return click, examination


def dbn_satisfaction(grades: np.ndarray, max_grade: float, satisfaction: float) -> np.ndarray:
    """Probability that a clicked item satisfies the user: ``satisfaction * gain``."""
    return satisfaction * gain(grades, max_grade)


def simulate_clicks(
    rng: np.random.Generator,
    grades_shown: np.ndarray,
    max_grade: float,
    model: str = "pbm",
    noise: float = 0.05,
    position_bias: float = 1.0,
    continuation: float = 0.9,
    satisfaction: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks on ``[lists, positions]`` of true grades in shown order, under ``model``.

    Returns the clicks (bool) and each row's true examination probability.
    """
    check_click_model(model, noise, position_bias, continuation, satisfaction)
    grades_shown = np.asarray(grades_shown)
    attracts = attraction(grades_shown, max_grade, noise)
    if model == "pbm":
        n, k = grades_shown.shape
        examination = np.broadcast_to(pbm_examination(position_bias, k), (n, k)).copy()
        return rng.random((n, k)) < examination * attracts, examination
    if model == "cascade":
        return sequential_clicks(rng, attracts, np.ones_like(attracts), 1.0)
    return sequential_clicks(
        rng, attracts, dbn_satisfaction(grades_shown, max_grade, satisfaction), continuation
    )
