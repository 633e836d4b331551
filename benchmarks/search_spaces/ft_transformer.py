"""FT-Transformer (``models/ft_transformer.py``), on its ``cpu`` profile."""

from __future__ import annotations

SOURCE = (
    "Gorishniy et al. 2021, 'Revisiting Deep Learning Models for Tabular Data' (NeurIPS), "
    "appendix, FT-Transformer's tuning space: n_layers UniformInt[1, 4], d_token "
    "UniformInt[64, 512], learning rate LogUniform[1e-5, 1e-3], weight decay "
    "LogUniform[1e-6, 1e-3] (and dropouts and the FFN factor, not in the model's Settings: "
    "the cpu profile's stay). Narrowed for 2 cores: 1-3 blocks and d_block 64..128 in steps "
    "of 16 (a multiple of the 8 heads); the default cpu profile is 2 blocks of 64."
)


def suggest(trial) -> dict:
    return {
        "n_blocks": trial.suggest_int("n_blocks", 1, 3),
        "d_block": trial.suggest_int("d_block", 64, 128, step=16),
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
    }
