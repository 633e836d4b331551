"""The XGBoost ranker's fit on a Dask cluster, with ``xgboost.dask.DaskXGBRanker``.

The training and validation rows go to the workers as dask arrays cut at query-group
boundaries, in qid order, one chunk per worker: every group stays whole on one worker (so
``allow_group_split`` splits none) and each worker's rows stay sorted by qid. The settings and
early stopping are the single-process ranker's; the booster comes back as a plain
``XGBRanker``, so scoring runs in this process as for a model trained here.

A model trained on Dask is not the same bits as one trained in one process: each worker
sketches the histogram bins from its own rows, and the merged sketch cuts the features in
slightly other places. The scores differ a little, not the quality (``tests/models/
test_xgboost_dask.py`` bounds the difference in test NDCG@10).
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from datamodules.cluster import ClusterError, cluster_stage

STAGE = "xgboost fit"

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # features, integer labels, qid (sorted)


def fit_on_dask(client, settings: dict, train: Rows, val: Rows, n_jobs: int) -> xgb.XGBRanker:
    """``XGBRanker(**settings)`` fitted on ``train`` with early stopping on ``val``, trained by
    the workers of ``client``; a lost worker ends it with one line naming the stage."""
    import xgboost.dask  # noqa: F401 (imports dask; only runs that train on it pay for that)

    workers = set(client.scheduler_info()["workers"])
    X, y, qid = _chunked(train, len(workers))
    X_val, y_val, qid_val = _chunked(val, len(workers))
    with cluster_stage(STAGE):
        model = xgb.dask.DaskXGBRanker(allow_group_split=True, **settings)
        model.client = client
        try:
            model.fit(X, y, qid=qid, eval_set=[(X_val, y_val)], eval_qid=[qid_val], verbose=False)
        except (xgb.core.XGBoostError, ValueError) as error:
            if not _worker_lost(client, workers, error):
                raise
            detail = f"{type(error).__name__}: {_failure_line(error)}"[:300]
            raise ClusterError(f"dask: {STAGE}: worker lost ({detail}); rerun to resume") from None
        booster = model.get_booster()
    local = xgb.XGBRanker()
    local.load_model(bytearray(booster.save_raw("ubj")))
    local.set_params(n_jobs=n_jobs)  # scoring runs here, at the run's thread count
    return local


def _chunked(rows: Rows, chunks: int):
    """Dask arrays of ``rows``, cut into at most ``chunks`` pieces at query-group starts."""
    import dask.array as da

    features, labels, qid = rows
    starts = np.flatnonzero(np.concatenate(([True], qid[1:] != qid[:-1])))
    cuts = np.unique(starts[np.linspace(0, len(starts), chunks + 1, dtype=int)[1:-1]])
    sizes = tuple(np.diff(np.concatenate(([0], cuts[cuts > 0], [len(qid)]))).tolist())
    return (
        da.from_array(features, chunks=(sizes, features.shape[1])),
        da.from_array(labels, chunks=(sizes,)),
        da.from_array(qid, chunks=(sizes,)),
    )


def _worker_lost(client, workers: set[str], error: Exception) -> bool:
    """Whether ``error`` is XGBoost's word for a worker that died mid-training: the others'
    collective calls fail, or XGBoost finds a restarted worker at another address."""
    text = str(error)
    gone = bool(workers - set(client.scheduler_info()["workers"]))
    return gone or "src/collective" in text or "workers died" in text


def _failure_line(error: Exception) -> str:
    """The line that says what failed (after its "- [file:line|time]: " prefix), or the first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    failed = [line.split("]: ", 1)[-1] for line in lines if "failed" in line]
    return failed[0] if failed else (lines[0] if lines else "")
