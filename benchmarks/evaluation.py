"""Scoring one split against every label the dataset has.

Graded labels (``true_relevance`` on the simulator, the ``relevance`` task) get NDCG@k;
binary behaviours (click, add-to-cart, purchase) get MRR, per-query AUC and overall AUC.
All of them rank by the model's one ranking score: the list a user would see.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from benchmarks.metrics import Convention, GroupMetric, evaluate_binary, evaluate_ranking
from datamodules.batches import SplitArrays

GRADED_LABELS = ("true_relevance", "relevance")
BINARY_LABELS = ("click", "add_to_cart", "purchase")


def evaluate_scores(
    arrays: SplitArrays,
    scores: np.ndarray,
    ks=(1, 3, 5, 10),
    gain: str = "exponential",
    convention: Convention = Convention(),  # noqa: B008 (frozen)
) -> tuple[dict, pl.DataFrame]:
    """Summary metrics ``{label: {metric: {...}}}`` and a per-query table.

    The per-query table has one row per request and a column ``<label>/<metric>`` per
    metric (NaN where the query is left out).
    """
    if scores.shape != (arrays.n_rows,):
        raise ValueError(
            f"the model returned {scores.shape} scores for a split of {arrays.n_rows} rows"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"the model returned {int((~np.isfinite(scores)).sum())} non-finite scores"
        )
    summary: dict[str, dict] = {}
    per_query: dict[str, np.ndarray] = {}
    for label in GRADED_LABELS + BINARY_LABELS:
        if label not in arrays.labels:
            continue
        values = arrays.labels[label]
        if label in GRADED_LABELS:
            results = evaluate_ranking(values, scores, arrays.group, ks, gain, convention)
        else:
            results = evaluate_binary(values, scores, arrays.group, convention)
        summary[label] = {}
        for name, result in results.items():
            if isinstance(result, GroupMetric):
                summary[label][name] = {
                    "mean": result.mean,
                    "counted": result.counted,
                    "left_out": result.left_out,
                }
                per_query[f"{label}/{name}"] = result.per_query
            else:
                summary[label][name] = {"mean": float(result)}
    first_row = arrays.offsets[:-1]
    table = pl.DataFrame({"request_id": arrays.request_id[first_row], **per_query})
    return summary, table


def reference_scores(arrays: SplitArrays) -> dict[str, np.ndarray]:
    """Model-free reference rankers every table shows beside the models.

    ``logged order`` replays what the logging ranker showed (position 1 first), for click
    logs only: a judged dataset's positions are only its file's order; ``random`` gives every
    item the same score, which the metrics score as the expected random order.
    """
    references = {"random": np.zeros(arrays.n_rows)}
    if any(label in arrays.labels for label in BINARY_LABELS):  # a click log: shown lists
        references = {"logged order": -arrays.position.astype(np.float64), **references}
    return references
