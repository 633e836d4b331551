"""The one contract every ranker follows, and the registry the driver builds them from.

A ranker is built from its settings (a mapping, checked against its ``Settings``
dataclass) and a seed, trained with ``fit(datamodule)``, and
scores a split with ``predict(datamodule, split)``: one float per row, in the split's row
order (``datamodule.arrays(split)``). Multi-task rankers also return per-task scores from
``predict_tasks``. Adding a baseline is one file::

    @register("my_model")
    class MyModel(Ranker):
        @dataclass(frozen=True)
        class Settings:
            alpha: float = 1.0

        def fit(self, datamodule): ...
        def predict(self, datamodule, split): ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from datamodules.settings import as_mapping, typed_settings
from models.devices import TrainerConfig

REGISTRY: dict[str, type[Ranker]] = {}


class Ranker(ABC):
    name: ClassVar[str] = ""

    @dataclass(frozen=True)
    class Settings:
        """The ranker's settings with their defaults: the one place each default lives. A
        ranker declares its own ``Settings`` dataclass; ``model_config.<name>`` may set any
        of its fields, and only them."""

    # True where the scores are the same bits at any thread count (tested in
    # tests/models/test_thread_independence.py); otherwise records are reused only at the
    # thread count that made them.
    thread_independent: ClassVar[bool] = False
    # True for rankers that train on the run's devices: the driver hands them the run's
    # `trainer` settings (device, strategy, precision), part of their records' identity.
    uses_trainer: ClassVar[bool] = False
    trainer_config: TrainerConfig = TrainerConfig()

    def __init__(self, settings: Mapping[str, Any] | Any = None, seed: int = 0):
        where = f"model_config.{self.name or type(self).__name__}"
        self.settings = typed_settings(self.Settings, settings, where)
        # The same settings as plain data: what records, W&B and Lightning's hparams hold.
        self.config: dict[str, Any] = as_mapping(self.settings)
        self.seed = seed
        # Whatever the model wants recorded about its training (best iteration, epochs, ...).
        self.training_summary: dict[str, Any] = {}
        # The W&B run of this fit, set by the driver when logging is on: a ranker may log its
        # training curves to it while it trains (neural rankers do, through Lightning).
        self.wandb_run = None

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        """Every setting at its default, as plain data."""
        return as_mapping(cls.Settings())

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


def create_ranker(name: str, settings: Mapping[str, Any] | Any = None, seed: int = 0) -> Ranker:
    return get_ranker(name)(settings, seed)
