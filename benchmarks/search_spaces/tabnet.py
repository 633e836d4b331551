"""TabNet (``models/tabnet_ranker.py``)."""

from __future__ import annotations

SOURCE = (
    "Arik & Pfister 2021, 'TabNet: Attentive Interpretable Tabular Learning' (AAAI), "
    "appendix, hyperparameter ranges: N_d = N_a in {8, 16, 24, 32, 64, 128}, N_steps in "
    "3..10, gamma in {1.0, 1.2, 1.5, 2.0}, lambda_sparse in {0, 1e-6, 1e-4, 1e-3, 1e-2, "
    "1e-1}, batch size 256..32768, virtual batch size 256..4096, learning rate in {0.005, "
    "0.01, 0.02, 0.025}. Narrowed for 2 cores: N_d = N_a up to 32, N_steps up to 7, batch "
    "size 512..4096, virtual batch size 128..512 (at most the batch); the learning-rate "
    "decay and batch-norm momentum are not in the model's Settings."
)


def suggest(trial) -> dict:
    width = trial.suggest_categorical("n_d", [8, 16, 24, 32])
    batch = trial.suggest_categorical("batch_size", [512, 1024, 2048, 4096])
    ghost = trial.suggest_categorical("virtual_batch_size", [128, 256, 512])
    return {
        "n_d": width,
        "n_a": width,  # N_d = N_a, as the paper advises
        "n_steps": trial.suggest_int("n_steps", 3, 7),
        "gamma": trial.suggest_categorical("gamma", [1.0, 1.2, 1.5, 2.0]),
        "lambda_sparse": trial.suggest_categorical(
            "lambda_sparse", [0.0, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1]
        ),
        "learning_rate": trial.suggest_categorical("learning_rate", [0.005, 0.01, 0.02, 0.025]),
        "batch_size": batch,
        "virtual_batch_size": min(ghost, batch),
    }
