"""DCN-V2 (``models/dcn_v2.py``)."""

from __future__ import annotations

SOURCE = (
    "Wang et al. 2021, 'DCN V2: Improved Deep & Cross Network and Practical Lessons for "
    "Web-scale Learning to Rank Systems' (WWW): the choices the paper compares, namely the "
    "depth of the cross network, the stacked and parallel structures, a full-rank W against "
    "DCN-Mix's low-rank experts (its advice: a rank well below the input width), and the "
    "depth and width of the deep part. The ranges are ours, for 2 cores and this "
    "benchmark's ~70 inputs: 1-4 cross layers, 1-3 deep layers of 64-256 units (narrower "
    "than the paper's web-scale layers), full rank or rank 16 or 32 with 1-4 experts, "
    "learning rate LogUniform[1e-4, 1e-2], weight decay LogUniform[1e-6, 1e-3], dropout "
    "Uniform[0, 0.3], categorical embeddings of 4-16."
)


def suggest(trial) -> dict:
    depth = trial.suggest_int("deep_depth", 1, 3)
    width = trial.suggest_categorical("deep_width", [64, 128, 256])
    low_rank = trial.suggest_categorical("low_rank", [None, 16, 32])
    settings = {
        "cross_layers": trial.suggest_int("cross_layers", 1, 4),
        "deep_layers": [width] * depth,
        "structure": trial.suggest_categorical("structure", ["stacked", "parallel"]),
        "low_rank": low_rank,
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "d_embedding": trial.suggest_categorical("d_embedding", [4, 8, 16]),
    }
    if low_rank is not None:  # experts exist only in DCN-Mix
        settings["n_experts"] = trial.suggest_int("n_experts", 1, 4)
    return settings
