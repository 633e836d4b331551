"""MTL-TinyBERT (``models/mtl_tinybert.py``), on its ``cpu`` profile."""

from __future__ import annotations

SOURCE = (
    "The learning rates of the model's two parts and the sizes of its fusion: the "
    "FT-Transformer backbone's learning rate in Gorishniy et al. 2021's space "
    "(LogUniform[1e-5, 1e-3]); the encoder's around BERT's fine-tuning rates (Devlin et al. "
    "2019 use 2e-5 to 5e-5; LogUniform[1e-5, 1e-4]); 0-2 tuned encoder layers (every layer "
    "is 3.5x slower on 2 cores, README 'Ablation'); a fusion backbone of 1-2 blocks of "
    "width 32..96 (steps of 16; the cpu profile's is 2 x 64); 2-8 MMoE experts (Ma et al. "
    "2018); head dropout Uniform[0, 0.3]. Ranges other than the learning rates are ours."
)


def suggest(trial) -> dict:
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "text_lr": trial.suggest_float("text_lr", 1e-5, 1e-4, log=True),
        "fine_tune_layers": trial.suggest_int("fine_tune_layers", 0, 2),
        "n_blocks": trial.suggest_int("n_blocks", 1, 2),
        "d_block": trial.suggest_int("d_block", 32, 96, step=16),
        "n_experts": trial.suggest_int("n_experts", 2, 8),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }
