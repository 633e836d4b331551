"""MMoE (``models/mmoe.py``)."""

from __future__ import annotations

SOURCE = (
    "Ma et al. 2018, 'Modeling Task Relationships in Multi-task Learning with Multi-gate "
    "Mixture-of-Experts' (KDD): what the paper tunes, namely the number of experts, the "
    "hidden units of experts and towers, and the learning rate. The ranges are ours, for 2 "
    "cores: 2-8 experts of one layer of 32-128 units, towers of 16-64, learning rate "
    "LogUniform[1e-4, 1e-2], weight decay LogUniform[1e-6, 1e-3], tower dropout "
    "Uniform[0, 0.3], categorical embeddings of 4-16; the task weights stay the "
    "benchmark's."
)


def suggest(trial) -> dict:
    return {
        "n_experts": trial.suggest_int("n_experts", 2, 8),
        "expert_layers": [trial.suggest_categorical("expert_width", [32, 64, 128])],
        "tower_layers": [trial.suggest_categorical("tower_width", [16, 32, 64])],
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "d_embedding": trial.suggest_categorical("d_embedding", [4, 8, 16]),
    }
