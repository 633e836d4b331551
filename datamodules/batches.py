"""What models receive: whole query groups, as numpy arrays or as padded torch batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class SplitArrays:
    """One split, one row per impression, rows of a request contiguous.

    Within a request the rows are in a seeded random order, never the logged one, so that
    breaking score ties by row order cannot replay the logging ranker.

    ``group`` numbers the requests 0..n_groups-1 in row order; ``offsets`` are the row
    boundaries of each group (``offsets[g]:offsets[g + 1]``).
    """

    numeric: np.ndarray  # float32 [rows, n_numeric], standardised
    categorical: np.ndarray  # int64 [rows, n_categorical], 0 = missing
    text_ids: np.ndarray  # int64 [rows, n_text_fields], -1 = no text
    labels: dict[str, np.ndarray]  # float32 [rows] per task / evaluation label
    group: np.ndarray  # int64 [rows]
    request_id: np.ndarray  # [rows], the log's request ids
    position: np.ndarray  # int32 [rows], the logged position (never a feature)

    @property
    def n_rows(self) -> int:
        return len(self.group)

    @property
    def n_groups(self) -> int:
        return int(self.group[-1]) + 1 if len(self.group) else 0

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.bincount(self.group, minlength=self.n_groups))])

    @property
    def group_sizes(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_groups)

    def tabular(self) -> np.ndarray:
        """Numeric then categorical columns as one float32 matrix, for tree models."""
        return np.hstack([self.numeric, self.categorical.astype(np.float32)])


@dataclass
class RankingBatch:
    """A padded batch of query groups: ``[groups, max_list]`` (+ feature dims)."""

    numeric: torch.Tensor  # float32 [B, L, n_numeric]
    categorical: torch.Tensor  # int64 [B, L, n_categorical]
    text_ids: torch.Tensor  # int64 [B, L, n_text_fields]
    labels: dict[str, torch.Tensor]  # float32 [B, L]
    mask: torch.Tensor  # bool [B, L], False on padding
    rows: torch.Tensor  # int64 [B, L], row index into the split (-1 on padding)
    # int64 [B, L], the logged position (0 on padding): read by the debiasing losses only,
    # never by a model's forward pass (it is not a feature).
    position: torch.Tensor


class QueryGroupDataset(Dataset):
    """Item ``g`` is all rows of query group ``g`` of one split."""

    def __init__(self, arrays: SplitArrays):
        self.arrays = arrays
        self._offsets = arrays.offsets

    def __len__(self) -> int:
        return self.arrays.n_groups

    def __getitem__(self, g: int) -> dict[str, np.ndarray]:
        start, stop = int(self._offsets[g]), int(self._offsets[g + 1])
        a = self.arrays
        return {
            "numeric": a.numeric[start:stop],
            "categorical": a.categorical[start:stop],
            "text_ids": a.text_ids[start:stop],
            "labels": {name: values[start:stop] for name, values in a.labels.items()},
            "rows": np.arange(start, stop),
            "position": a.position[start:stop],
        }


def collate_groups(items: list[dict]) -> RankingBatch:
    """Pad groups to the longest list in the batch."""
    longest = max(len(item["rows"]) for item in items)
    size = (len(items), longest)

    def pad(key: str, fill, dtype) -> torch.Tensor:
        first = items[0][key]
        out = np.full(size + first.shape[1:], fill, dtype=dtype)
        for i, item in enumerate(items):
            out[i, : len(item[key])] = item[key]
        return torch.from_numpy(out)

    rows = pad("rows", -1, np.int64)
    labels = {}
    for name in items[0]["labels"]:
        out = np.zeros(size, dtype=np.float32)
        for i, item in enumerate(items):
            out[i, : len(item["labels"][name])] = item["labels"][name]
        labels[name] = torch.from_numpy(out)
    return RankingBatch(
        numeric=pad("numeric", 0.0, np.float32),
        categorical=pad("categorical", 0, np.int64),
        text_ids=pad("text_ids", -1, np.int64),
        labels=labels,
        mask=rows >= 0,
        rows=rows,
        position=pad("position", 0, np.int64),
    )
