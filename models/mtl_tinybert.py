"""MTL-TinyBERT: a small BERT's view of query and product, fused with FT-Transformer tokens
of the tabular features, and multi-task heads for click, add-to-cart, purchase and relevance.

One item (a product shown for a query) is one sequence for the transformer:

1. **Tabular tokens**: the FT-Transformer feature tokenizer of ``rtdl-revisiting-models``
   (``LinearEmbeddings`` for numeric features, ``CategoricalEmbeddings`` for categorical
   ones; behaviour and user-history features included) and a [CLS] token.
2. **Text tokens** (:class:`TextTokens`): the query, title and description embeddings of the
   text tower (:mod:`models.text_tower`: a small BERT, mean-pooled, its top
   ``fine_tune_layers`` fine-tuned) each projected to one token, plus **interaction tokens**
   for every product field: the element-wise product and absolute difference with the
   query (each projected to a token) and their cosine (a scalar token), appended to the
   sequence so that attention mixes text and tabular tokens.
3. The FT-Transformer backbone (``FTTransformerBackbone``); its [CLS] output, through the
   normalisation and activation of the FT-Transformer's own head (LayerNorm, ReLU: the
   backbone is pre-norm, so its last residual stream is not normalised), is the shared
   representation.
4. **MMoE heads** (:class:`models.blocks.MMoEHeads`): shared experts, a gate and a tower per
   task. The loss is the ``task_weights`` sum of per-task listwise losses, or, with
   ``uncertainty_weighting``, each task's loss scaled by a learned precision (Kendall, Gal
   and Cipolla, CVPR 2018: ``exp(-s_t) * L_t + s_t``, times its task weight).

The ranking score is the ``relevance`` head (the derived graded labels), as for MMoE.

Sizes come from a ``profile``: ``cpu`` (default; the FT-Transformer's cpu profile, d 64 and
2 blocks, the top encoder layer fine-tuned on query and title, descriptions through the
frozen encoder) and ``gpu`` (the FT-Transformer paper size, d 192 and 3 blocks, every encoder
layer fine-tuned on every text field). Any of ``fine_tune_layers``, ``tuned_fields``,
``n_blocks`` and ``d_block`` set explicitly overrides the profile.

Ablation switches: ``text: false`` (no text tower and no text tokens; the shared lexical and
similarity features every model sees stay), ``interaction_tokens: false`` (the query and
product tokens only), ``fine_tune_layers`` (0, N or "all"), ``task_weights`` (one task).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from rtdl_revisiting_models import CategoricalEmbeddings, FTTransformerBackbone, LinearEmbeddings
from torch import nn

from datamodules.batches import RankingBatch
from datamodules.features import FeatureSpec
from datamodules.splits import SPLITS
from models.base import register
from models.blocks import MMoEHeads, backbone_kwargs, present_tasks
from models.neural import EVERY_TASK_WEIGHTS, NeuralRanker, RankingNet, TrainingSettings
from models.text_tower import TextTower

QUERY_FIELD = "query"
PRODUCT_FIELDS = ("title", "description")

PROFILES: dict[str, dict[str, Any]] = {
    # Sized to train on the default preset within 6 minutes on 2 CPU cores (measured by
    # `make bench`): one tuned layer under bf16 autocast, at most 3 epochs.
    "cpu": {
        "ft_profile": "cpu",
        "fine_tune_layers": 1,
        "tuned_fields": ["query", "title"],
        "text_precision": "bf16",
        "max_epochs": 3,
    },
    # The FT-Transformer paper size, the whole encoder fine-tuned on every text field, and
    # the shared epoch budget: for a GPU.
    "gpu": {
        "ft_profile": "paper",
        "fine_tune_layers": "all",
        "tuned_fields": ["query", "title", "description"],
        "text_precision": "bf16",
        "max_epochs": TrainingSettings.max_epochs,
    },
}
PROFILE_KEYS = ("fine_tune_layers", "tuned_fields", "text_precision", "max_epochs")


def resolved_profile(config: dict[str, Any]) -> dict[str, Any]:
    """The profile's settings, with those the config sets explicitly taking precedence."""
    if config["profile"] not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {config['profile']!r}")
    settings = dict(PROFILES[config["profile"]])
    for key in PROFILE_KEYS:
        if config[key] is not None:
            settings[key] = config[key]
    unknown = sorted(set(settings["tuned_fields"]) - {QUERY_FIELD, *PRODUCT_FIELDS})
    if unknown:
        raise ValueError(f"tuned_fields: unknown text field(s) {', '.join(unknown)}")
    return settings


class TextTokens(nn.Module):
    """Query and product-field embeddings, and their interactions, as transformer tokens."""

    def __init__(self, d_text: int, d_token: int, product_fields: list[str], interactions: bool):
        super().__init__()
        self.product_fields = list(product_fields)
        self.interactions = interactions
        fields = [QUERY_FIELD, *self.product_fields]
        self.field_tokens = nn.ModuleDict({f: nn.Linear(d_text, d_token) for f in fields})
        if interactions:
            self.product_tokens = nn.ModuleDict(
                {f: nn.Linear(d_text, d_token) for f in self.product_fields}
            )
            self.difference_tokens = nn.ModuleDict(
                {f: nn.Linear(d_text, d_token) for f in self.product_fields}
            )
            self.cosine_tokens = LinearEmbeddings(len(self.product_fields), d_token)

    @property
    def n_tokens(self) -> int:
        # Per product field: its own token, then product, difference and cosine tokens.
        per_field = 4 if self.interactions else 1
        return 1 + per_field * len(self.product_fields)

    def forward(self, vectors: dict[str, torch.Tensor]) -> torch.Tensor:
        """``vectors``: field -> [items, d_text]; returns [items, n_tokens, d_token]."""
        tokens = [layer(vectors[field]) for field, layer in self.field_tokens.items()]
        if self.interactions:
            query = vectors[QUERY_FIELD]
            cosines = []
            for field in self.product_fields:
                product = vectors[field]
                tokens.append(self.product_tokens[field](query * product))
                tokens.append(self.difference_tokens[field]((query - product).abs()))
                cosines.append(nn.functional.cosine_similarity(query, product, dim=-1))
            out = torch.stack(tokens, dim=1)
            return torch.cat([out, self.cosine_tokens(torch.stack(cosines, dim=-1))], dim=1)
        return torch.stack(tokens, dim=1)


class MTLTinyBERTNet(RankingNet):
    def __init__(self, spec: FeatureSpec, config: dict[str, Any], tower: TextTower | None = None):
        config = {**config, "task_weights": present_tasks(config["task_weights"], spec)}
        super().__init__(spec, config)
        self.tasks = tuple(self.task_weights)  # a head per trained task, no more
        settings = resolved_profile(config)
        ft = backbone_kwargs({**config, "profile": settings["ft_profile"]})
        d_token = ft["d_block"]
        self.cls_token = nn.Parameter(torch.empty(d_token).uniform_(-1, 1) / math.sqrt(d_token))
        self.numeric_tokens = LinearEmbeddings(spec.n_numeric, d_token) if spec.n_numeric else None
        self.categorical_tokens = (
            CategoricalEmbeddings(list(spec.cardinalities), d_token, True)
            if spec.cardinalities
            else None
        )
        self.tower = tower if config["text"] else None
        if config["text"]:
            if tower is None:
                raise ValueError("text: true needs a text tower")
            self.field_column = {f: spec.text_fields.index(f) for f in spec.text_fields}
            products = [f for f in PRODUCT_FIELDS if f in self.field_column]
            if QUERY_FIELD not in self.field_column or not products:
                raise ValueError("the text tower needs the query and a title or description")
            self.tuned_fields = [f for f in settings["tuned_fields"] if f in self.field_column]
            if tower.n_tuned == 0:
                self.tuned_fields = []
            self.text_tokens = TextTokens(
                tower.dim, d_token, products, bool(config["interaction_tokens"])
            )
        self.backbone = FTTransformerBackbone(d_out=None, **ft)
        # What the library's output head applies before its linear layer.
        self.cls_norm = nn.Sequential(nn.LayerNorm(d_token), nn.ReLU())
        self.heads = MMoEHeads(d_token, self.tasks, config)
        if config["uncertainty_weighting"]:
            self.log_variances = nn.ParameterDict(
                {task: nn.Parameter(torch.zeros(())) for task in self.tasks}
            )

    # ------------------------------------------------------------------ forward

    def text_vectors(self, text_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Field -> pooled vector per item, for ``text_ids`` [items, fields] (-1: no text)."""
        vectors: dict[str, torch.Tensor] = {}
        tuned = [text_ids[:, self.field_column[f]] for f in self.tuned_fields]
        if tuned:
            # Each unique text of the batch goes through the tuned layers once.
            ids = torch.stack(tuned, dim=1)
            unique, inverse = torch.unique(ids[ids >= 0], return_inverse=True)
            pooled = self.tower(unique)
            index = torch.full_like(ids, -1)
            index[ids >= 0] = inverse
            for j, field in enumerate(self.tuned_fields):
                vectors[field] = _gather_or_zero(pooled, index[:, j])
        for field in [QUERY_FIELD, *self.text_tokens.product_fields]:
            if field not in vectors:
                ids = text_ids[:, self.field_column[field]]
                vectors[field] = _gather_or_zero(self.tower.frozen(ids.clamp(min=0)), ids, True)
        return vectors

    def tokens(self, batch: RankingBatch) -> torch.Tensor:
        """[items, tokens, d]: [CLS], numeric, categorical and text tokens of real items."""
        mask = batch.mask
        n_items = int(mask.sum())
        parts = [self.cls_token.expand(n_items, 1, -1)]
        if self.numeric_tokens is not None:
            parts.append(self.numeric_tokens(batch.numeric[mask]))
        if self.categorical_tokens is not None:
            parts.append(self.categorical_tokens(batch.categorical[mask]))
        if self.tower is not None:
            parts.append(self.text_tokens(self.text_vectors(batch.text_ids[mask])))
        return torch.cat(parts, dim=1)

    def forward(self, batch: RankingBatch) -> dict[str, torch.Tensor]:
        shared = self.cls_norm(self.backbone(self.tokens(batch)))  # [items, d]: the [CLS]
        out = {}
        for task, logits in self.heads(shared).items():
            out[task] = logits.new_zeros(batch.mask.shape).masked_scatter(batch.mask, logits)
        return out

    # ------------------------------------------------------------------ training

    def combine_losses(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.config["uncertainty_weighting"]:
            return super().combine_losses(losses)
        total = 0.0
        for task, loss in losses.items():
            log_variance = self.log_variances[task]
            total = total + self.task_weights[task] * (
                torch.exp(-log_variance) * loss + log_variance
            )
        return total

    def configure_optimizers(self):
        # AdamW. The fine-tuned encoder layers get their own (BERT fine-tuning) learning rate;
        # as in the FT-Transformer paper, no weight decay on embeddings, norms and biases.
        tower = {id(p) for p in (self.tower.parameters() if self.tower is not None else [])}
        no_decay_modules = (nn.LayerNorm, LinearEmbeddings, CategoricalEmbeddings)
        no_decay = {id(self.cls_token)}
        for module in self.modules():
            if isinstance(module, no_decay_modules):
                no_decay |= {id(p) for p in module.parameters()}
        no_decay |= {id(p) for name, p in self.named_parameters() if name.endswith("bias")}
        groups: dict[tuple[float, float], list] = {}
        for p in self.parameters():
            if not p.requires_grad:
                continue
            lr = self.config["text_lr"] if id(p) in tower else self.config["lr"]
            decay = 0.0 if id(p) in no_decay else self.config["weight_decay"]
            groups.setdefault((lr, decay), []).append(p)
        return torch.optim.AdamW(
            [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
        )


def _gather_or_zero(vectors: torch.Tensor, index: torch.Tensor, aligned: bool = False):
    """Rows ``vectors[index]`` (or ``vectors`` itself when ``aligned``), zero where index < 0."""
    rows = vectors if aligned else vectors[index.clamp(min=0)]
    return rows * (index >= 0).unsqueeze(-1).to(rows.dtype)


@register("mtl_tinybert")
class MTLTinyBERTRanker(NeuralRanker):
    module_class = MTLTinyBERTNet

    @dataclass(frozen=True)
    class Settings(TrainingSettings):
        # The FT-Transformer paper's AdamW settings (lr 1e-4; weight decay 1e-5, the shared
        # default) for everything but the encoder layers, which get BERT's usual fine-tuning
        # rate (Devlin et al. 2019 use 2e-5 to 5e-5).
        lr: float = 1e-4
        text_lr: float = 5e-5
        profile: Literal["cpu", "gpu"] = "cpu"
        # The text encoder: None = the data's encoder (data.labels.encoder), else a name,
        # hub id or folder as there.
        encoder: str | None = None
        # None = from the profile; 0 (frozen), N top layers, "all"
        fine_tune_layers: int | Literal["all"] | None = None
        # None = from the profile; text fields through the tuned layers
        tuned_fields: tuple[Literal["query", "title", "description"], ...] | None = None
        # None = from the profile; "32" or "bf16" (tuned layers)
        text_precision: Literal["32", "bf16"] | None = None
        max_epochs: int | None = None  # None = from the profile
        n_blocks: int | None = None  # FT-Transformer backbone; None = from the profile
        d_block: int | None = None
        text: bool = True  # False: no text tower (ablation)
        interaction_tokens: bool = True  # False: query and product tokens only (ablation)
        # Every task trains, as for MMoE; the ranking score is the relevance head.
        task_weights: dict[str, float] = field(default_factory=lambda: dict(EVERY_TASK_WEIGHTS))
        uncertainty_weighting: bool = False
        # MMoE heads over the [CLS] representation (the MMoE baseline's sizes).
        n_experts: int = 4
        expert_layers: tuple[int, ...] = (64,)
        tower_layers: tuple[int, ...] = (32,)
        dropout: float = 0.1

    def __init__(self, settings: Mapping[str, Any] | Settings | None = None, seed: int = 0):
        super().__init__(settings, seed)
        # The shared Trainer setup reads max_epochs; the profile decides it unless set.
        max_epochs = int(resolved_profile(self.config)["max_epochs"])
        self.settings = replace(self.settings, max_epochs=max_epochs)
        self.config["max_epochs"] = max_epochs

    def build_module(self, datamodule) -> MTLTinyBERTNet:
        spec = datamodule.spec
        tower = None
        if self.settings.text:
            settings = resolved_profile(self.config)
            tower = TextTower(
                datamodule.texts,
                tuned_text_ids(datamodule, settings["tuned_fields"]),
                datamodule.text_encoder(self.settings.encoder),
                settings["fine_tune_layers"],
                progress=self.progress,
                precision=settings["text_precision"],
            )
        return MTLTinyBERTNet(spec, self.config, tower)


def tuned_text_ids(datamodule, fields: list[str]) -> np.ndarray:
    """Every text id of ``fields`` in any split: the texts the tuned layers will see."""
    spec = datamodule.spec
    columns = [spec.text_fields.index(f) for f in fields if f in spec.text_fields]
    if not columns:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(
        [datamodule.arrays(split).text_ids[:, columns].ravel() for split in SPLITS]
    )
