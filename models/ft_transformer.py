"""FT-Transformer as a neural ranker, from the ``rtdl-revisiting-models`` library.

Gorishniy, Rubachev, Khrulkov, Babenko, "Revisiting Deep Learning Models for Tabular Data",
NeurIPS 2021 (https://arxiv.org/abs/2106.11959); the library is the authors' reference
implementation (https://github.com/yandex-research/rtdl-revisiting-models).

Each item of a query group is one sample for the transformer: its numeric features become
tokens through ``LinearEmbeddings``, its categorical codes through ``CategoricalEmbeddings``
(code 0, "missing", is an ordinary embedding row), and a [CLS] token is prepended. The
library's output head on [CLS] gives one logit per task (``d_out = n_tasks``). The items of
a padded ``[groups, list]`` batch are flattened, padding dropped, and the logits scattered
back to ``[groups, list]``; items never attend to each other, so the model scores each
product on its own and the listwise loss does the ranking.

Model size comes from a ``profile``:

- ``cpu`` (default): d_block 64, 2 blocks, 8 heads, with the library's dropouts for 2 blocks;
  about 7,000 training rows/s on 2 CPU cores, so a benchmark run fits a CPU budget.
- ``paper``: the library's default configuration, ``FTTransformer.get_default_kwargs(3)``
  (d_block 192, 3 blocks, 8 heads, attention dropout 0.2, FFN dropout 0.1, ReGLU with
  hidden multiplier 4/3), i.e. the paper's "default FT-Transformer" (Table 13 / Sec. 3.3).

``n_blocks`` and ``d_block`` override the profile when set (None = from the profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from rtdl_revisiting_models import FTTransformer

from datamodules.batches import RankingBatch
from datamodules.features import FeatureSpec
from models.base import register
from models.blocks import backbone_kwargs
from models.neural import NeuralRanker, RankingNet, TrainingSettings


class FTTransformerNet(RankingNet):
    def __init__(self, spec: FeatureSpec, config: dict[str, Any]):
        super().__init__(spec, config)
        self.tasks = list(self.task_weights)
        if config["score_task"] not in self.tasks:
            raise ValueError(
                f"score_task {config['score_task']!r} has no head; "
                f"heads: {', '.join(self.tasks)} (from task_weights)"
            )
        self.has_numeric = spec.n_numeric > 0
        self.has_categorical = len(spec.cardinalities) > 0
        self.model = FTTransformer(
            n_cont_features=spec.n_numeric,
            cat_cardinalities=list(spec.cardinalities),
            d_out=len(self.tasks),
            **backbone_kwargs(config),
        )

    def forward(self, batch: RankingBatch) -> dict[str, torch.Tensor]:
        mask = batch.mask
        # [groups, list, ...] -> [items, ...], real items only.
        numeric = batch.numeric[mask] if self.has_numeric else None
        categorical = batch.categorical[mask] if self.has_categorical else None
        logits = self.model(numeric, categorical)  # [items, n_tasks]
        out = logits.new_zeros(*mask.shape, len(self.tasks))
        out = out.masked_scatter(mask.unsqueeze(-1), logits)
        return {task: out[..., i] for i, task in enumerate(self.tasks)}

    def configure_optimizers(self):
        # AdamW as in the paper, with the library's parameter groups: no weight decay on
        # embeddings, LayerNorms and biases (``make_parameter_groups``).
        return torch.optim.AdamW(
            self.model.make_parameter_groups(),
            lr=self.config["lr"],
            weight_decay=self.config["weight_decay"],
        )


@register("ft_transformer")
class FTTransformerRanker(NeuralRanker):
    module_class = FTTransformerNet

    @dataclass(frozen=True)
    class Settings(TrainingSettings):
        # The paper trains FT-Transformer with AdamW, lr 1e-4 and weight decay 1e-5, the shared
        # default (Gorishniy et al. 2021, Appendix; ``FTTransformer.make_default_optimizer``).
        lr: float = 1e-4
        profile: Literal["cpu", "paper"] = "cpu"
        n_blocks: int | None = None  # None = from the profile
        # None = from the profile; a multiple of the 8 attention heads.
        d_block: int | None = None
