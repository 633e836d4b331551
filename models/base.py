"""The one contract every ranker follows, and the registry the driver builds them from.

A ranker is built from a config dict and a seed, trained with ``fit(datamodule)``, and
scores a split with ``predict(datamodule, split)``: one float per row, in the split's row
order (``datamodule.arrays(split)``). Multi-task rankers also return per-task scores from
``predict_tasks``. Adding a baseline is one file::

    @register("my_model")
    class MyModel(Ranker):
        default_config = {"alpha": 1.0}
        def fit(self, datamodule): ...
        def predict(self, datamodule, split): ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

REGISTRY: dict[str, type[Ranker]] = {}


class Ranker(ABC):
    name: ClassVar[str] = ""
    # Hyperparameters with their defaults; a config may override any of them, and only them.
    default_config: ClassVar[dict[str, Any]] = {}
    # True where the scores are the same bits at any thread count (tested in
    # tests/models/test_thread_independence.py); otherwise records are reused only at the
    # thread count that made them.
    thread_independent: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0):
        config = dict(config or {})
        unknown = sorted(set(config) - set(self.default_config))
        if unknown:
            raise ValueError(
                f"{self.name or type(self).__name__}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.default_config)) or 'none'}"
            )
        checked = {
            k: _typed(self.name or type(self).__name__, k, v, self.default_config[k])
            for k, v in config.items()
        }
        self.config = {**self.default_config, **checked}
        self.seed = seed
        # Whatever the model wants recorded about its training (best iteration, epochs, ...).
        self.training_summary: dict[str, Any] = {}
        # The W&B run of this fit, set by the driver when logging is on: a ranker may log its
        # training curves to it while it trains (neural rankers do, through Lightning).
        self.wandb_run = None

    def log_progress(self, values: dict[str, float]) -> None:
        """Send a training curve's point (an iteration's or epoch's metrics) to the run's W&B
        run as it happens; nothing when W&B is off."""
        if self.wandb_run is not None:
            self.wandb_run.log(values)

    @abstractmethod
    def fit(self, datamodule) -> None:
        """Train on ``datamodule``'s train split, using its val split for early stopping."""

    @abstractmethod
    def predict(self, datamodule, split: str) -> np.ndarray:
        """One ranking score per row of ``split``, in its row order."""

    def predict_tasks(self, datamodule, split: str) -> dict[str, np.ndarray]:
        """Scores per task; single-task rankers score only ``relevance``."""
        return {"relevance": self.predict(datamodule, split)}


def _typed(model: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of its default (numbers written ``1e-4``, which
    YAML reads as text, become numbers); one-line error naming the setting otherwise."""
    where = f"model_config.{model}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {value!r}")
    elif isinstance(default, int | float) and value is not None:
        number = value
        if isinstance(value, str):
            try:
                number = float(value) if isinstance(default, float) else int(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int | float):
            kind = "a number" if isinstance(default, float) else "a whole number"
            raise ValueError(f"{where} must be {kind}, not {value!r}")
        if isinstance(default, int) and number != int(number):
            raise ValueError(f"{where} must be a whole number, not {value!r}")
        return float(number) if isinstance(default, float) else int(number)
    elif isinstance(default, int | float):
        raise ValueError(f"{where} must be a number, not {value!r}")
    elif value is None:
        return value  # "off" for the settings that take it (activations, low rank, mixes)
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{where} must be text, not {value!r}")
    elif isinstance(default, dict) and not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping, e.g. {{relevance: 1.0}}, not {value!r}")
    elif isinstance(default, list | tuple) and not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be a list, e.g. [64, 32], not {value!r}")
    return value


def register(name: str):
    """Class decorator: make a ranker available to the driver under ``name``."""

    def decorate(cls: type[Ranker]) -> type[Ranker]:
        if not (isinstance(cls, type) and issubclass(cls, Ranker)):
            raise TypeError(f"@register({name!r}) needs a subclass of models.base.Ranker")
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"a ranker named {name!r} is already registered")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return decorate


def get_ranker(name: str) -> type[Ranker]:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def create_ranker(name: str, config: dict[str, Any] | None = None, seed: int = 0) -> Ranker:
    return get_ranker(name)(config, seed)
