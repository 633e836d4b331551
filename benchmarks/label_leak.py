"""How much of a label column the shared features already hold: the label-leak diagnostic
printed under every table.

Derived labels are a function of click rates and query-title similarity that every model also
gets as features, so a high score on them can be recovery of the labelling formula rather
than ranking quality. For each label a table scores, a small fixed probe (XGBoost regression,
50 trees of depth 3, seeded) is trained on the training split's features to predict that label
and scored on the test split with the table's own metric: where the probe comes close to the
models, the column says more about the formula than about the models.
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from benchmarks.evaluation import BINARY_LABELS, GRADED_LABELS, evaluate_scores
from datamodules.threads import current_threads

PROBE = {"n_estimators": 50, "max_depth": 3, "learning_rate": 0.3, "random_state": 0}


def probe_scores(datamodule, label: str) -> np.ndarray | None:
    """The probe's test scores for ``label`` (None where the training split lacks it)."""
    train, test = datamodule.arrays("train"), datamodule.arrays("test")
    if label not in train.labels:
        return None
    target = np.nan_to_num(np.asarray(train.labels[label], dtype=np.float64))
    probe = xgb.XGBRegressor(**PROBE, tree_method="hist", n_jobs=current_threads())
    probe.fit(train.tabular(), target)
    return probe.predict(test.tabular()).astype(np.float64)


def label_leak(datamodule, ks, gain: str, convention) -> dict[str, tuple[str, float]]:
    """``label -> (metric name, probe's test value)`` for every label the log makes (the
    simulator's truth is never a training label, so it is not probed): the deepest NDCG@k
    for graded labels, MRR for behaviours."""
    test = datamodule.arrays("test")
    found = {}
    for label in GRADED_LABELS + BINARY_LABELS:
        if label not in test.labels:
            continue
        scores = probe_scores(datamodule, label)
        if scores is None:
            continue
        metrics, _ = evaluate_scores(test, scores, ks, gain, convention)
        name = f"ndcg@{max(ks)}" if label in GRADED_LABELS else "mrr"
        found[label] = (name, metrics[label][name]["mean"])
    return found


def leak_line(found: dict[str, tuple[str, float]]) -> str:
    """The sentence under a table."""
    if not found:
        return ""
    values = "; ".join(f"{label} {name.upper()} {v:.4f}" for label, (name, v) in found.items())
    return (
        "Label-leak check: a small probe on the shared features alone (XGBoost regression, 50 "
        f"trees of depth 3, trained on each label) scores {values}. Where it comes close to "
        "the models, that column measures how well its formula is recovered more than ranking "
        "quality."
    )
