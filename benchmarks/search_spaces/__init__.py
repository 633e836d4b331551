"""Search spaces of ``rankbench tune``, one file per model: ``suggest(trial)`` draws a trial's
settings (overrides of the model's ``Settings``, by their names) and ``SOURCE`` says where
the space comes from and where it was narrowed for a 2-core CPU.

A model without a space here is refused by ``rankbench tune`` in one line. A plugin adds
one with ``SPACES["my_model"] = my_space_module``.
"""

from __future__ import annotations

from types import ModuleType

from benchmarks.search_spaces import (
    dcn_v2,
    ft_transformer,
    lightgbm,
    lightgbm_unbiased,
    mmoe,
    mtl_tinybert,
    tabnet,
    xgboost,
    xgboost_unbiased,
)

SPACES: dict[str, ModuleType] = {
    "xgboost": xgboost,
    "xgboost_unbiased": xgboost_unbiased,
    "lightgbm": lightgbm,
    "lightgbm_unbiased": lightgbm_unbiased,
    "tabnet": tabnet,
    "ft_transformer": ft_transformer,
    "dcn_v2": dcn_v2,
    "mmoe": mmoe,
    "mtl_tinybert": mtl_tinybert,
}


def search_space(model: str) -> ModuleType:
    """``model``'s space (``suggest``, ``SOURCE``), or a one-line error."""
    if model not in SPACES:
        raise ValueError(
            f"tune: no search space for model {model!r}; models with one: "
            f"{', '.join(SPACES)} (add benchmarks/search_spaces/<model>.py)"
        )
    return SPACES[model]
