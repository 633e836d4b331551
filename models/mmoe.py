"""MMoE: shared experts, one softmax gate and one tower per task.

Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018.

Every item's :class:`~models.neural.TabularInput` vector ``x`` goes through ``n_experts``
expert MLPs ``f_i``; each task ``k`` mixes them with its own gate (the paper's Eq. 5-6)::

    g^k(x) = softmax(W_gk x),   f^k(x) = Σ_i g^k(x)_i f_i(x),   y_k = h^k(f^k(x))

and scores with its own tower ``h^k``. The tasks are the dataset's training targets
(``spec.tasks``: relevance plus whichever of click, add_to_cart and purchase are logged).
Losses are weighted by ``task_weights``; weights for behaviours the dataset lacks are dropped,
so one config serves click-only logs too. The ranking score is the ``score_task`` head, or,
with ``score_mix: {task: weight}``, a weighted sum of task logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from datamodules.batches import RankingBatch
from datamodules.features import FeatureSpec
from models.base import register
from models.blocks import MMoEHeads, TabularInput, present_tasks
from models.neural import EVERY_TASK_WEIGHTS, NeuralRanker, RankingNet, TrainingSettings


class MMoENet(RankingNet):
    def __init__(self, spec: FeatureSpec, config: dict[str, Any]):
        config = {
            **config,
            "task_weights": present_tasks(config["task_weights"], spec),
            "score_mix": present_tasks(config["score_mix"], spec),
        }
        super().__init__(spec, config)
        mix = config["score_mix"]
        if mix is not None and not mix:
            raise ValueError("score_mix names none of this dataset's tasks")
        self.input = TabularInput(spec, config["d_embedding"])
        self.heads = MMoEHeads(self.input.n_out, spec.tasks, config)

    def gate_weights(self, batch: RankingBatch) -> dict[str, torch.Tensor]:
        """Each task's mixture over the experts, ``[groups, list, n_experts]``."""
        return self.heads.gate_weights(self.input(batch))

    def forward(self, batch: RankingBatch) -> dict[str, torch.Tensor]:
        return self.heads(self.input(batch))

    def ranking_score(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mix = self.config["score_mix"]
        if not mix:
            return outputs[self.config["score_task"]]
        return sum(float(weight) * outputs[task] for task, weight in mix.items())


@register("mmoe")
class MMoERanker(NeuralRanker):
    # Its scores are the same bits at 1 and 2 threads on an AVX2 processor but not on an
    # AVX-512 one (torch splits the products differently there), so a record of it is
    # reused only at the thread count that made it.
    module_class = MMoENet

    @dataclass(frozen=True)
    class Settings(TrainingSettings):  # AdamW, lr 1e-3, early stopping on validation NDCG@10
        task_weights: dict[str, float] = field(default_factory=lambda: dict(EVERY_TASK_WEIGHTS))
        # The ranking score: the score_task head, unless score_mix = {task: weight} asks for a
        # weighted sum of task logits.
        score_mix: dict[str, float] | None = None
        # The paper uses 8 experts (its synthetic and census experiments); 4 small experts
        # and towers are enough on CPU for this benchmark's ~70 input features.
        n_experts: int = 4
        expert_layers: tuple[int, ...] = (64,)
        tower_layers: tuple[int, ...] = (32,)
        d_embedding: int = 8  # per categorical feature (CPU-sized)
        dropout: float = 0.1  # in the towers
