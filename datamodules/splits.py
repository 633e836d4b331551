"""Request-level train/validation/test splits, fixed by seed and recorded by a hash.

All items of one request always land in the same part. By default a log with timestamps is
split by time (the last requests are the test period, as a deployed ranker would face), and
a log without timestamps is split at random by request with a fixed seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    by: str = "auto"  # "auto" (time if the log has timestamps), "time" or "request"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0  # the split seed: fixed per dataset, independent of the model seeds

    def __post_init__(self):
        if self.by not in ("auto", "time", "request"):
            raise ValueError(f"split.by must be 'auto', 'time' or 'request', not {self.by!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"split.{name} must be between 0 and 1")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("split.val_fraction + split.test_fraction must be below 1")


def assign_splits(impressions: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """A table ``request_id -> split`` (one row per request)."""
    by = config.by
    if by == "auto":
        by = "time" if "timestamp" in impressions.columns else "request"
    if by == "time" and "timestamp" not in impressions.columns:
        raise ValueError("split.by='time' needs a 'timestamp' column in the impressions")

    requests = _requests_in_split_order(impressions, by, config.seed)
    n = requests.height
    n_test = max(1, round(n * config.test_fraction))
    n_val = max(1, round(n * config.val_fraction))
    if n - n_test - n_val < 1:
        raise ValueError(f"too few requests ({n}) to split into train, val and test")
    part = np.repeat(np.array(SPLITS), [n - n_val - n_test, n_val, n_test])
    return requests.with_columns(split=pl.Series(part, dtype=pl.String))


def _requests_in_split_order(impressions: pl.DataFrame, by: str, seed: int) -> pl.DataFrame:
    if by == "time":
        # A request's time is its first impression's; ties broken by id for determinism.
        return (
            impressions.group_by("request_id")
            .agg(pl.col("timestamp").min())
            .sort(["timestamp", "request_id"])
            .select("request_id")
        )
    requests = impressions.select(pl.col("request_id").unique().sort())
    order = np.random.default_rng(seed).permutation(requests.height)
    return requests[order]


def split_hash(assignment: pl.DataFrame) -> str:
    """A short hash of which requests went where: equal hashes mean identical splits."""
    digest = hashlib.sha256()
    for name in SPLITS:
        ids = assignment.filter(pl.col("split") == name)["request_id"].sort()
        digest.update(name.encode())
        digest.update(ids.cast(pl.String).str.join("\x1f").item().encode())
    return digest.hexdigest()[:16]
