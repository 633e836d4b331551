"""Turns a search log into graded relevance labels: pure functions over polars tables."""

from labeling.behavioural import behavioural_grade

__all__ = ["behavioural_grade"]
