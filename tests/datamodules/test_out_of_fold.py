"""Behaviour features of training rows never see their own request's clicks: checked through
the DataModule, not only on the helper."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from datamodules import SearchLogDataModule
from datamodules.features import FeatureConfig
from datamodules.search_log import DataConfig
from tests.conftest import HandmadeSource, make_handmade_log

# Text features off: this is about behaviour features only (and needs no encoder).
CONFIG = DataConfig(features=FeatureConfig(lexical_overlap=False, text_similarity=False))
CONFIG = dataclasses.replace(
    CONFIG, labels=dataclasses.replace(CONFIG.labels, relevance="behavioural")
)


def _log_with_request(request_id: int, clicks: list[int]):
    """The handmade log plus one request of a new user showing two products no other request
    shows, with ``clicks`` on them (the total number of clicks stays the same)."""
    log = make_handmade_log()
    # Request ids 0, 10, 20, ...: room to slot the new request anywhere in the split order.
    spaced = pl.col("request_id") * 10
    log = dataclasses.replace(
        log,
        impressions=log.impressions.with_columns(spaced),
        truth=dataclasses.replace(log.truth, relevance=log.truth.relevance.with_columns(spaced)),
    )
    products = pl.concat(
        [
            log.products,
            # Alike in every attribute, so that moving a click from one to the other changes
            # no brand-level or price-level sum: only the two products' own.
            log.products.head(1)
            .with_columns(brand=pl.lit("lone brand"))
            .vstack(log.products.head(1).with_columns(brand=pl.lit("lone brand")))
            .with_columns(
                product_id=pl.Series([900, 901]), title=pl.Series(["lone lamp", "lone rug"])
            ),
        ]
    )
    users = pl.concat([log.users, pl.DataFrame({"user_id": [99], "region": ["n"]})])
    extra = log.impressions.head(2).with_columns(
        request_id=pl.lit(request_id, pl.Int64),
        user_id=pl.lit(99, log.impressions["user_id"].dtype),
        query=pl.lit("lone"),
        product_id=pl.Series([900, 901]),
        position=pl.Series([1, 2], dtype=log.impressions["position"].dtype),
        click=pl.Series(clicks, dtype=log.impressions["click"].dtype),
        add_to_cart=pl.Series([0, 0], dtype=log.impressions["add_to_cart"].dtype),
        purchase=pl.Series([0, 0], dtype=log.impressions["purchase"].dtype),
    )
    impressions = pl.concat([log.impressions, extra])
    truth = log.truth
    truth = dataclasses.replace(
        truth,
        relevance=pl.concat(
            [
                truth.relevance,
                extra.select("request_id", "product_id").with_columns(
                    true_relevance=pl.Series([1, 1], dtype=truth.relevance["true_relevance"].dtype)
                ),
            ]
        ),
    )
    return dataclasses.replace(
        log, products=products, users=users, impressions=impressions, truth=truth
    )


def _features(log) -> tuple[pl.DataFrame, str]:
    datamodule = SearchLogDataModule(HandmadeSource(log), CONFIG)
    datamodule.setup()
    spec = datamodule.spec
    rows = datamodule._require_setup().rows
    return rows.select("request_id", "product_id", *spec.numeric, *spec.categorical), rows


def test_a_training_requests_own_clicks_never_reach_its_features():
    # A request id that lands in the training split.
    for request_id in range(5, 600, 10):
        features, rows = _features(_log_with_request(request_id, [1, 0]))
        split = rows.filter(pl.col("request_id") == request_id)["split"].unique().to_list()
        if split == ["train"]:
            break
    assert split == ["train"]
    flipped, _ = _features(_log_with_request(request_id, [0, 1]))
    assert features.columns == flipped.columns
    # Only the request's own pairs carry its clicks, and no other request shows them: with
    # the out-of-fold rule, not one feature of any row moves.
    for column in features.columns:
        np.testing.assert_array_equal(
            features[column].to_numpy(), flipped[column].to_numpy(), err_msg=column
        )
    own = features.filter(pl.col("request_id") == request_id)
    assert own.height == 2 and "qp_click_rate" in features.columns
