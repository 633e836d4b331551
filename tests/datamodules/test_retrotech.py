"""The RetroTech adapter, on the real folder when it is there."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from datamodules.retrotech import read_retrotech
from datamodules.tables import LogValidationError, validate_log

RETROTECH = Path(__file__).resolve().parents[3] / "shared" / "data" / "retrotech"
needs_retrotech = pytest.mark.skipif(
    not RETROTECH.is_dir(), reason=f"RetroTech data not found at {RETROTECH}"
)


@needs_retrotech
def test_retrotech_becomes_valid_canonical_tables():
    log, notes = read_retrotech(RETROTECH)
    log = validate_log(log)
    impressions = log.impressions
    assert impressions["position"].min() == 1
    assert impressions["query"].n_unique() == 13
    assert set(log.behaviours) == {"click"}  # no cart, no purchase, no users
    assert log.users is None and not log.has_timestamps
    assert impressions["product_id"].str.len_chars().min() == 12
    assert any("missing from the catalog" in note for note in notes)
    # Click rates fall with position, as the folder's README describes.
    ctr = impressions.group_by("position").agg(pl.col("click").mean()).sort("position")
    assert ctr["click"][0] > ctr["click"][1] > ctr["click"][10]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LogValidationError, match="RetroTech catalog not found"):
        read_retrotech(tmp_path)
