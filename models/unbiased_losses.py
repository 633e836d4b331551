"""Debiasing inside the loss: inverse propensity scoring and the Dual Learning Algorithm.

A click (and an add-to-cart or a purchase, which need the item to be examined first) mixes
relevance with position: under the position-based model ``E[c_i] = theta_k(i) * r_i``, with
``theta_k`` the probability that position ``k`` is examined. ``loss: ips_listwise`` and
``loss: dla`` of the shared training setup (:mod:`models.neural`) train the heads of these
*click-type* tasks on the logged behaviours with the position bias taken out; the
``relevance`` task (derived labels, already debiased, or people's grades) keeps the plain
listwise loss.

Both are the listwise softmax cross-entropy of a query group's scores ``s`` on its clicks,
each click weighted by an inverse propensity ``w_i``, averaged over the batch's groups::

    loss = 1/|groups| * sum_groups sum_{i clicked} w_i * (-log softmax(s)_i)

the counterfactual risk estimate of Joachims, Swaminathan & Schnabel, "Unbiased
Learning-to-Rank with Biased Feedback" (WSDM 2017), with the listwise softmax loss of Ai et al.
(SIGIR 2018) and Wang et al. (WSDM 2018). With ``w_i = 1 / theta_k(i)`` its expectation over
the clicks is ``sum_i r_i (-log softmax(s)_i)``: the loss on true relevance, gradient
included. Every group counts in the mean, with or without a click, so that the mean stays an
unbiased estimate.

- ``ips_listwise``: ``theta`` is the suite's own estimate (:mod:`labeling.propensity`, the
  method ``labels.labeling.propensity_method`` chooses), from the training part of the log only,
  once before training; never the simulator's truth.
- ``dla``: the Dual Learning Algorithm (Ai, Bi, Luo, Guo & Croft, "Unbiased Learning to Rank
  with Unbiased Propensity Estimation", SIGIR 2018) learns ``theta`` jointly with the ranker:
  a propensity tower, one learnable score ``phi_k`` per position, whose softmax over a list's
  positions is the examination model. The ranking loss weights clicks by
  ``theta_1 / theta_k = exp(phi_1 - phi_k)`` (detached); the tower's loss is the softmax
  cross-entropy of ``phi`` over the list on the same clicks, weighted by the ranker's inverse
  relevance relative to the item shown first, ``softmax(s)_first / softmax(s)_i =
  exp(s_first - s_i)`` (detached). The sum trains both; prediction reads the ranker only.

Propensities (and DLA's relative relevances) are clipped from below at ``propensity_clip``
(default 0.05), so no weight exceeds ``1 / propensity_clip`` (20): a few clicks at rarely
examined positions would otherwise dominate the gradient (the variance of IPS; Joachims et
al. 2017, Sec. 4, clip the same way).
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import polars as pl
import torch
from torch import nn

from datamodules.tables import BEHAVIOUR_COLUMNS
from labeling.propensity import PropensityEstimate, impression_propensity

UNBIASED_LOSSES = ("ips_listwise", "dla")
# Behaviours that need the item to be examined first: their logged labels are position-biased.
CLICK_TASKS = BEHAVIOUR_COLUMNS


def check_propensity_clip(clip: float) -> None:
    if not 0.0 < clip <= 1.0:
        raise ValueError(
            f"propensity_clip must lie in (0, 1] (weights are at most 1 / propensity_clip), "
            f"not {clip}"
        )


def check_click_tasks(loss: str, trained: dict[str, float], tasks) -> None:
    """An unbiased loss needs a click-type task to train."""
    if loss in UNBIASED_LOSSES and not set(trained) & set(CLICK_TASKS):
        raise ValueError(
            f"loss {loss!r} needs a click-type task ({', '.join(CLICK_TASKS)}) in task_weights; "
            f"it trains {', '.join(trained) or 'nothing'} (this dataset's tasks: "
            f"{', '.join(tasks)})"
        )


def weighted_softmax_loss(
    logits: torch.Tensor, clicks: torch.Tensor, weights: torch.Tensor | float, mask: torch.Tensor
) -> torch.Tensor:
    """``1/groups * sum_groups sum_i weights_i clicks_i (-log softmax(logits)_i)`` over the
    items of ``mask``; every group counts in the mean (see the module docstring)."""
    log_probs = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=1)
    target = torch.where(mask, weights * clicks, torch.zeros_like(clicks))
    per_group = -(target * torch.where(mask, log_probs, torch.zeros_like(log_probs))).sum(dim=1)
    return per_group.mean()


def _position_index(position: torch.Tensor, n_positions: int) -> torch.Tensor:
    # Positions beyond the training log's deepest share its last value; padding (0) reads
    # position 1 and is masked out by the losses.
    return (position.long() - 1).clamp(0, n_positions - 1)


class InversePropensityLoss(nn.Module):
    """``loss: ips_listwise``: clicks weighted by ``1 / max(theta_k, clip)``, ``theta`` a fixed
    curve per position (1-based; position 1 = 1.0)."""

    def __init__(self, propensity: np.ndarray, clip: float):
        super().__init__()
        check_propensity_clip(clip)
        clipped = np.maximum(np.asarray(propensity, dtype=np.float64), clip)
        # Not part of the state dict: it is rebuilt from the log, never trained.
        self.register_buffer(
            "weights", torch.as_tensor(1.0 / clipped, dtype=torch.float32), persistent=False
        )
        self.clip = clip
        self.summary: dict = {"loss": "ips_listwise", "propensity_clip": clip}

    def forward(self, logits, clicks, position, mask) -> torch.Tensor:
        weights = self.weights[_position_index(position, len(self.weights))]
        return weighted_softmax_loss(logits, clicks, weights, mask)

    @classmethod
    def from_estimate(
        cls, estimate: PropensityEstimate, clip: float, train_positions: np.ndarray
    ) -> InversePropensityLoss:
        """From the training log's estimate; the summary says which curve and method, and how
        many training impressions had their propensity clipped (zero or below ``clip``)."""
        deepest = max(int(train_positions.max()), estimate.max_position)
        positions = pl.DataFrame({"position": np.arange(1, deepest + 1, dtype=np.int32)})
        per_position = impression_propensity(positions, estimate).to_numpy()
        module = cls(per_position, clip)
        below = per_position[np.asarray(train_positions, dtype=np.int64) - 1] < clip
        module.summary.update(
            propensity_method=estimate.method,
            propensity_curve=estimate.curve["propensity"].to_list(),  # null: not estimated
            propensity_source=estimate.curve["source"].to_list(),  # which estimator, per position
            propensity_notes=list(estimate.notes),
            training_impressions=int(len(train_positions)),
            clipped_impressions=int(below.sum()),
        )
        return module


class PropensityTower(nn.Module):
    """``loss: dla``: the Dual Learning Algorithm's propensity tower, one score per position,
    and its two losses (Ai et al., SIGIR 2018; see the module docstring)."""

    def __init__(self, n_positions: int, clip: float):
        super().__init__()
        check_propensity_clip(clip)
        self.scores = nn.Parameter(torch.zeros(n_positions))  # phi_k; uniform to start
        self.clip = clip

    def relative_propensity(self) -> torch.Tensor:
        """``theta_k / theta_1`` per position, as the tower has learned them."""
        return torch.exp(self.scores - self.scores[0])

    def forward(self, logits, clicks, position, mask) -> torch.Tensor:
        """The ranking loss of ``logits`` plus the tower's propensity loss, on ``clicks``."""
        log_clip = math.log(self.clip)
        tower = self.scores[_position_index(position, len(self.scores))]
        # w = theta_1 / theta_k, at most 1 / clip; log space, so no exp overflows.
        log_propensity = (tower - self.scores[0]).detach().clamp(min=log_clip)
        ranking = weighted_softmax_loss(logits, clicks, torch.exp(-log_propensity), mask)
        # The item shown first (smallest logged position) anchors the relative relevance.
        shown = position.masked_fill(~mask, torch.iinfo(position.dtype).max)
        first = logits.gather(1, shown.argmin(dim=1, keepdim=True))
        log_relevance = (logits - first).detach().clamp(min=log_clip)
        propensity = weighted_softmax_loss(tower, clicks, torch.exp(-log_relevance), mask)
        return ranking + propensity

    @property
    def summary(self) -> dict:
        return {
            "loss": "dla",
            "propensity_clip": self.clip,
            "learned_propensity": [float(p) for p in self.relative_propensity().detach().cpu()],
        }


class TowerParameterGroup(L.Callback):
    """The propensity tower trains in its own parameter group of the model's optimizer (its
    own learning rate; no weight decay, which would pull it towards no position bias),
    whatever groups the model's own ``configure_optimizers`` makes."""

    def __init__(self, tower: PropensityTower, lr: float):
        self.tower, self.lr = tower, lr

    def on_fit_start(self, trainer, module) -> None:
        own = {id(p) for p in self.tower.parameters()}
        optimizer = trainer.optimizers[0]
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in own]
        optimizer.add_param_group(
            {"params": list(self.tower.parameters()), "lr": self.lr, "weight_decay": 0.0}
        )


def build_debiasing(
    loss: str, clip: float, datamodule
) -> InversePropensityLoss | PropensityTower | None:
    """The debiasing of ``loss`` for a fit on ``datamodule`` (None for a plain loss)."""
    if loss not in UNBIASED_LOSSES:
        return None
    positions = datamodule.arrays("train").position
    if loss == "ips_listwise":
        estimate = datamodule.training_propensities()
        return InversePropensityLoss.from_estimate(estimate, clip, positions)
    return PropensityTower(int(positions.max()), clip)


def require_logged_positions(loss: str, datamodule) -> None:
    """Before anything is built: an unbiased loss needs positions where items were shown."""
    if loss in UNBIASED_LOSSES and not datamodule.has_logged_positions:
        raise ValueError(
            f"loss {loss!r} needs logged positions: this dataset is judged pairs, whose "
            "'position' is the order of its files (use loss: listwise)"
        )
