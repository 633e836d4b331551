"""DCN-V2: a cross network of explicit feature crosses beside (or under) a deep MLP.

Wang, Shivanna, Cheng, Jain, Lin, Hong and Chi, "DCN V2: Improved Deep & Cross Network and
Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021 (arXiv:2008.13535).

Each cross layer (the paper's Eq. 1) keeps the input ``x_0`` and crosses it with the current
vector through a full-rank matrix::

    x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l

The cheaper DCN-Mix variant (Eq. 2) replaces ``W_l`` by K low-rank experts in subspaces of
rank ``r``, mixed by a gate that looks at ``x_l``::

    x_{l+1} = Σ_i G_i(x_l) E_i(x_l) + x_l,   E_i(x_l) = x_0 ⊙ (U_i g(C_i g(V_iᵀ x_l)) + b_l)

with ``g`` a nonlinearity in the low-rank space (left out, together with ``C_i``, when
``low_rank_activation`` is None: ``E_i = x_0 ⊙ (U_i V_iᵀ x_l + b_l)``), and ``G`` a softmax
over the experts of a linear function of ``x_l``.

The network here crosses each item's :class:`~models.blocks.TabularInput` vector; the deep
part is an MLP, either **stacked** on the cross network or run in **parallel** with it and
concatenated (the paper's two structures), and a linear head per task scores each item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from datamodules.batches import RankingBatch
from datamodules.features import FeatureSpec
from models.base import register
from models.blocks import TabularInput, mlp
from models.neural import NeuralRanker, RankingNet, TrainingSettings

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
STRUCTURES = ("stacked", "parallel")


class CrossLayerV2(nn.Module):
    """One DCN-V2 cross layer on the last dimension: ``forward(x0, x) -> x_next``.

    ``low_rank=None``: full-rank ``W`` (Eq. 1). ``low_rank=r``: ``n_experts`` low-rank experts
    ``U_i g(C_i g(V_iᵀ x))`` mixed by a softmax gate on ``x`` (Eq. 2); with one expert the gate
    is skipped.
    """

    def __init__(
        self,
        d: int,
        low_rank: int | None = None,
        n_experts: int = 1,
        activation: str | None = "relu",
    ):
        super().__init__()
        if low_rank is not None and low_rank < 1:
            raise ValueError(f"low_rank must be a positive rank or None, not {low_rank}")
        if n_experts < 1:
            raise ValueError(f"n_experts must be at least 1, not {n_experts}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(
                f"low-rank activation must be one of {', '.join(ACTIVATIONS)} or None, "
                f"not {activation!r}"
            )
        self.low_rank = low_rank
        if low_rank is None:
            self.linear = nn.Linear(d, d)  # W_l and b_l
            return
        self.n_experts = n_experts
        self.bias = nn.Parameter(torch.zeros(d))  # b_l, shared by the experts
        self.V = nn.Parameter(torch.empty(n_experts, d, low_rank))
        self.U = nn.Parameter(torch.empty(n_experts, low_rank, d))
        for weight in (self.V, self.U):
            nn.init.xavier_uniform_(weight)
        self.g = ACTIVATIONS[activation]() if activation else None
        if self.g is not None:
            self.C = nn.Parameter(torch.empty(n_experts, low_rank, low_rank))
            nn.init.xavier_uniform_(self.C)
        self.gate = nn.Linear(d, n_experts) if n_experts > 1 else None

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.low_rank is None:
            return x0 * self.linear(x) + x
        # Row vectors: x V_i is V_iᵀ x, [..., K, r]; then C_i and U_i per expert.
        h = torch.einsum("...d,kdr->...kr", x, self.V)
        if self.g is not None:
            h = self.g(torch.einsum("...kr,krs->...ks", self.g(h), self.C))
        experts = x0.unsqueeze(-2) * (torch.einsum("...kr,krd->...kd", h, self.U) + self.bias)
        if self.gate is None:
            return experts.squeeze(-2) + x
        weights = torch.softmax(self.gate(x), dim=-1)  # G_i(x_l), [..., K]
        return (weights.unsqueeze(-1) * experts).sum(dim=-2) + x


class CrossNetworkV2(nn.Module):
    """``n_layers`` cross layers; the output has the input's dimension ``d``."""

    def __init__(
        self,
        d: int,
        n_layers: int,
        low_rank: int | None = None,
        n_experts: int = 1,
        activation: str | None = "relu",
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            CrossLayerV2(d, low_rank, n_experts, activation) for _ in range(n_layers)
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


class DCNV2Net(RankingNet):
    def __init__(self, spec: FeatureSpec, config: dict[str, Any]):
        super().__init__(spec, config)
        if config["structure"] not in STRUCTURES:
            raise ValueError(
                f"structure must be one of {', '.join(STRUCTURES)}, not {config['structure']!r}"
            )
        self.input = TabularInput(spec, config["d_embedding"])
        d = self.input.n_out
        self.cross = CrossNetworkV2(
            d,
            config["cross_layers"],
            config["low_rank"],
            config["n_experts"],
            config["low_rank_activation"],
        )
        self.stacked = config["structure"] == "stacked"
        self.deep, d_deep = mlp(d, list(config["deep_layers"]), config["dropout"])
        d_head = d_deep if self.stacked else d + d_deep
        tasks = [t for t in spec.tasks if t in self.task_weights]
        self.heads = nn.ModuleDict({task: nn.Linear(d_head, 1) for task in tasks})

    def forward(self, batch: RankingBatch) -> dict[str, torch.Tensor]:
        x0 = self.input(batch)
        if self.stacked:
            hidden = self.deep(self.cross(x0))
        else:
            hidden = torch.cat([self.cross(x0), self.deep(x0)], dim=-1)
        return {task: head(hidden).squeeze(-1) for task, head in self.heads.items()}


@register("dcn_v2")
class DCNV2Ranker(NeuralRanker):
    # Its scores are the same bits at 1 and 2 threads on an AVX2 processor but not on an
    # AVX-512 one (torch splits the products differently there), so a record of it is
    # reused only at the thread count that made it.
    module_class = DCNV2Net

    @dataclass(frozen=True)
    class Settings(TrainingSettings):  # AdamW, lr 1e-3, early stopping on validation NDCG@10
        # The paper studies shallow cross networks (a few layers); 3 is cheap on CPU.
        cross_layers: int = 3
        # The paper's deep parts are much wider (hundreds of units and more); two modest
        # layers suit this benchmark's ~70 input features on CPU.
        deep_layers: tuple[int, ...] = (256, 128)
        # "stacked" (cross then deep) or "parallel" (both on x_0, concatenated): the paper
        # offers both and finds neither better on every dataset.
        structure: Literal["stacked", "parallel"] = "stacked"
        # None: full-rank W (DCN-V2, Eq. 1). An int r: DCN-Mix (Eq. 2) with n_experts experts
        # of rank r (the paper's practical advice is a rank well below d, around d/4). Low
        # rank saves parameters only when r << d; on the simulator d = 17 numeric + 7 x 8 = 73,
        # so r = 64 with 4 experts is an option for wider inputs, not a saving.
        low_rank: int | None = None
        n_experts: int = 4
        # g in Eq. 2: relu (torchrec's LowRankMixtureCrossNet default), tanh, or None (no
        # nonlinearity and no C_i).
        low_rank_activation: Literal["relu", "tanh"] | None = "relu"
        d_embedding: int = 8  # per categorical feature (CPU-sized)
        dropout: float = 0.1  # in the deep part
