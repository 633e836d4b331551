"""Conventions a ranking metric can follow, so that a number can sit beside a paper's.

rankbench's default (``Convention()``): queries without a positive label are left out of the
mean (and counted beside every table), tied scores are averaged over every order they could
take, NDCG discounts rank ``r`` by ``1 / log2(r + 1)``, and a query shorter than ``k`` is
scored on the items it has. Each part can be switched; ``letor4`` is the LETOR 4.0
evaluation script's (``Eval-Score-4.0.pl``): queries without a relevant document score 0,
ties keep the file's order, ranks 1 and 2 are undiscounted and rank ``r >= 3`` is discounted
by ``1 / log2(r)``, and NDCG@k is 0 for a query with fewer than ``k`` documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Convention:
    # Queries without a positive label: left out of the mean, or scored 0 or 1 (NDCG, MRR).
    empty_queries: Literal["skip", "zero", "one"] = "skip"
    # Tied scores: the expectation over their orders, or the rows' order (first row first).
    ties: Literal["average", "file_order"] = "average"
    # NDCG's discount of rank r: 1 / log2(r + 1), or LETOR 4.0's 1 for r <= 2, 1 / log2(r).
    discount: Literal["log2", "letor4"] = "log2"
    # NDCG@k of a query with fewer than k items: on the items it has, or 0 (LETOR 4.0).
    short_lists: Literal["score", "zero"] = "score"


CONVENTIONS = {
    "rankbench": Convention(),
    "letor4": Convention(
        empty_queries="zero", ties="file_order", discount="letor4", short_lists="zero"
    ),
}
