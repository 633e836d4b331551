"""Network blocks more than one ranker uses: the tabular input, MLPs, MMoE heads (MMoE and
MTL-TinyBERT), the FT-Transformer backbone's settings (FT-Transformer and MTL-TinyBERT), and
the rule that drops tasks a dataset does not log."""

from __future__ import annotations

from typing import Any

import torch
from rtdl_revisiting_models import FTTransformer
from torch import nn

from datamodules.batches import RankingBatch
from datamodules.features import FeatureSpec
from datamodules.tables import BEHAVIOUR_COLUMNS


class TabularInput(nn.Module):
    """Numeric features as they are, plus one embedding per categorical feature, concatenated:
    ``[groups, list, n_numeric + n_categorical * d_embedding]``."""

    def __init__(self, spec: FeatureSpec, d_embedding: int):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(cardinality, d_embedding) for cardinality in spec.cardinalities
        )
        self.n_out = spec.n_numeric + len(spec.cardinalities) * d_embedding

    def forward(self, batch: RankingBatch) -> torch.Tensor:
        parts = [batch.numeric]
        parts += [emb(batch.categorical[..., i]) for i, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=-1)


def mlp(d_in: int, hidden: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(d_in, width), nn.ReLU(), nn.Dropout(dropout)]
        d_in = width
    return nn.Sequential(*layers), d_in


class MMoEHeads(nn.Module):
    """Shared experts, one softmax gate and one tower per task, over any input vector."""

    def __init__(self, d_in: int, tasks, config: dict[str, Any]):
        super().__init__()
        experts, d_expert = [], d_in
        for _ in range(config["n_experts"]):
            expert, d_expert = mlp(d_in, list(config["expert_layers"]), 0.0)
            experts.append(expert)
        self.experts = nn.ModuleList(experts)
        self.tasks = tuple(tasks)
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, config["n_experts"]) for t in self.tasks})
        towers = {}
        for task in self.tasks:
            body, d_tower = mlp(d_expert, list(config["tower_layers"]), config["dropout"])
            towers[task] = nn.Sequential(body, nn.Linear(d_tower, 1))
        self.towers = nn.ModuleDict(towers)

    def gate_weights(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each task's mixture over the experts, ``[..., n_experts]``."""
        return {task: torch.softmax(gate(x), dim=-1) for task, gate in self.gates.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        experts = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [..., E, d]
        outputs = {}
        for task, weights in self.gate_weights(x).items():
            mixed = (weights.unsqueeze(-1) * experts).sum(dim=-2)
            outputs[task] = self.towers[task](mixed).squeeze(-1)
        return outputs


def present_tasks(weights: dict[str, float] | None, spec: FeatureSpec) -> dict[str, float] | None:
    """Drop optional behaviours (add_to_cart, purchase, ...) the dataset does not log.

    Other unknown names are kept, so that a typo still fails loudly downstream.
    """
    if weights is None:
        return None
    return {t: w for t, w in weights.items() if t in spec.tasks or t not in BEHAVIOUR_COLUMNS}


def _library_defaults(n_blocks: int) -> dict[str, Any]:
    kwargs = FTTransformer.get_default_kwargs(n_blocks=n_blocks)
    kwargs.pop("_is_default")
    return kwargs


PROFILES: dict[str, dict[str, Any]] = {
    # A smaller width than the library's 2-block default (128), measured to fit CPU budgets.
    "cpu": {**_library_defaults(2), "d_block": 64},
    # The paper's / library's default FT-Transformer.
    "paper": _library_defaults(3),
}


def backbone_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The library's backbone settings for ``config``: its profile, then explicit overrides."""
    profile = config["profile"]
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    kwargs = dict(PROFILES[profile])
    for key in ("n_blocks", "d_block"):
        if config[key] is not None:
            kwargs[key] = int(config[key])
    if kwargs["n_blocks"] < 1:
        raise ValueError(f"n_blocks must be at least 1, not {kwargs['n_blocks']}")
    heads = kwargs["attention_n_heads"]
    if kwargs["d_block"] < 1 or kwargs["d_block"] % heads:
        raise ValueError(f"d_block must be a positive multiple of {heads} (the attention heads)")
    return kwargs
