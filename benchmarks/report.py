"""Summary tables: mean ± std over seeds per model, a bootstrap interval over queries, and
paired significance over queries.

For every metric column, the best model (highest mean) is in bold, and a model whose
per-query values (averaged over its seeds) differ from the best one's by a two-sided Wilcoxon
signed-rank test over the test queries is marked with ``*`` where its p-value, corrected by
Holm-Bonferroni over the model rows tested in that column (the reference rows are a family
of their own), is below alpha (``<key>:p``; the uncorrected value is ``<key>:p_raw``).
``<key>:ci_low`` and ``<key>:ci_high`` bound a 95% percentile bootstrap interval of the
mean over the test requests, resampling requests or, where query texts repeat, query texts
with all their requests (scipy, 1,000 resamples, seeded, so a table is the same bytes
every time). Reference rows (logged order, random,
ideal) are deterministic and shown for scale; they are never the "best".
``summarise(..., against=name)`` tests every row against the named row instead (an
ablation's reference variant).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.stats import bootstrap, wilcoxon

REFERENCE_PREFIX = "ref: "


@dataclass(frozen=True)
class Column:
    key: str  # "<label>/<metric>" as in the records
    title: str


def table_columns(labels: list[str], ks=(1, 3, 5, 10)) -> list[Column]:
    columns = []
    for label, short in (("true_relevance", "true"), ("relevance", "rel")):
        if label in labels:
            columns += [Column(f"{label}/ndcg@{k}", f"NDCG@{k} {short}") for k in ks]
    for label, short in (("click", "click"), ("add_to_cart", "cart"), ("purchase", "buy")):
        if label in labels:
            columns.append(Column(f"{label}/mrr", f"MRR {short}"))
    return columns


@dataclass
class ModelResult:
    name: str
    reference: bool
    # metric key -> one mean per seed
    values: dict[str, list[float]]
    # request_id -> per-query values averaged over seeds
    per_query: pl.DataFrame
    fit_seconds: list[float]
    peak_mb: list[float]
    # A record this code, data or settings would not make again: shown, never best or tested.
    stale: bool = False
    # The processor each seed's run trained on (its record's environment.cpu; None: unnamed).
    processors: list[str | None] = field(default_factory=list)


def summarise(
    results: list[ModelResult],
    columns: list[Column],
    alpha: float = 0.05,
    against: str | None = None,
    units: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per model: mean, std, interval and p-value for every column, against the best
    model, or against the row named ``against`` where given. ``units`` (``request_id``,
    ``unit``) makes the test and the interval resample units (query texts) instead of
    requests: each unit's value is the mean over its requests."""
    names = [r.name for r in results]
    if against is not None and against not in names:
        raise ValueError(f"no row named {against!r} to compare with; rows: {', '.join(names)}")
    rows = []
    for result in results:
        row = {
            "model": result.name,
            "reference": result.reference,
            "stale": result.stale,
            "seeds": len(result.fit_seconds) if not result.reference else 0,
        }
        for column in columns:
            values = np.asarray(result.values.get(column.key, [np.nan]), dtype=np.float64)
            row[f"{column.key}:mean"] = float(np.mean(values))
            row[f"{column.key}:std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row[f"{column.key}:ci_low"], row[f"{column.key}:ci_high"] = query_interval(
                result.per_query, column.key, units
            )
        row["fit_seconds:mean"] = float(np.mean(result.fit_seconds)) if result.fit_seconds else None
        row["peak_mb:max"] = float(np.max(result.peak_mb)) if result.peak_mb else None
        rows.append(row)
    table = pl.DataFrame(rows)
    for column in columns:
        baseline = _named(results, against) if against else _best_model(results, column)
        raw = _p_values(results, column, baseline, units)
        table = table.with_columns(
            raw.alias(f"{column.key}:p_raw"),
            holm_by_family(raw, [r.reference for r in results]).alias(f"{column.key}:p"),
        )
    return table


def holm(p_values: pl.Series) -> pl.Series:
    """Holm-Bonferroni adjusted p-values of one family (the non-null values): the i-th
    smallest of m times (m - i + 1), made non-decreasing, at most 1."""
    values = p_values.to_numpy().astype(np.float64)
    tested = np.flatnonzero(~np.isnan(values))
    adjusted = np.full(values.size, np.nan)
    if tested.size:
        order = tested[np.argsort(values[tested], kind="stable")]
        m = order.size
        scaled = values[order] * (m - np.arange(m))
        adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return pl.Series(p_values.name, adjusted).fill_nan(None)


def holm_by_family(p_values: pl.Series, reference: list[bool]) -> pl.Series:
    """Holm within two families: the model rows' comparisons, and the reference rows' (is the
    best model better than the logged order?). References in the models' family would make
    every model's star more conservative for comparisons no one asked of the models."""
    adjusted = np.full(len(p_values), np.nan)
    for family in (np.asarray(reference, dtype=bool), ~np.asarray(reference, dtype=bool)):
        if family.any():
            rows = holm(p_values.filter(pl.Series(family)))
            adjusted[family] = rows.cast(pl.Float64).fill_null(np.nan).to_numpy()
    return pl.Series(p_values.name, adjusted).fill_nan(None)


def query_interval(
    per_query: pl.DataFrame, key: str, units: pl.DataFrame | None = None, level: float = 0.95
) -> tuple:
    """A percentile bootstrap interval of the mean over requests, the mean the table shows,
    resampling whole units: each request alone, or with ``units`` (``request_id``, ``unit``)
    each query text with all its requests (a cluster bootstrap of the ratio of the resampled
    units' sums to their request counts). (None, None) where fewer than two units count;
    seeded, so the same values give the same interval. The interval always holds its mean:
    when values are nearly equal, rounding could leave the mean a last bit outside."""
    if key not in per_query.columns:
        return None, None
    frame = per_query.select("request_id", key).filter(
        pl.col(key).is_not_null() & pl.col(key).is_not_nan()
    )
    if units is None:
        frame = frame.with_columns(unit=pl.col("request_id"))
    else:
        frame = frame.join(units, on="request_id")
    grouped = frame.group_by("unit").agg(pl.col(key).sum().alias("sum"), pl.len().alias("n"))
    grouped = grouped.sort("unit")
    sums, counts = grouped["sum"].to_numpy(), grouped["n"].to_numpy().astype(np.float64)
    if sums.size == 0:
        return None, None
    mean = float(sums.sum() / counts.sum())
    values = frame[key].to_numpy()
    if sums.size < 2 or np.all(values == values[0]):
        return mean, mean
    result = bootstrap(
        (sums, counts),
        lambda s, n, axis=-1: s.sum(axis=axis) / n.sum(axis=axis),
        paired=True,
        vectorized=True,
        batch=100,  # 100 resamples at a time: memory stays ~100x the units
        n_resamples=1000,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return min(low, mean), max(high, mean)


def _named(results: list[ModelResult], name: str) -> ModelResult:
    return next(r for r in results if r.name == name)


def _best_model(results: list[ModelResult], column: Column) -> ModelResult | None:
    candidates = [r for r in results if not (r.reference or r.stale) and column.key in r.values]
    if not candidates:
        return None
    return max(candidates, key=lambda r: np.mean(r.values[column.key]))


def _p_values(
    results: list[ModelResult],
    column: Column,
    baseline: ModelResult | None,
    units: pl.DataFrame | None = None,
) -> pl.Series:
    """Each row's p-value against ``baseline`` (None for the baseline itself)."""
    p_values = []
    base = by_unit(baseline.per_query, column.key, units) if baseline is not None else None
    for result in results:
        if (
            baseline is None
            or result is baseline
            or result.stale
            or column.key not in result.per_query.columns
            or column.key not in baseline.per_query.columns
        ):
            p_values.append(None)
            continue
        p_values.append(paired_test(base, by_unit(result.per_query, column.key, units), column.key))
    return pl.Series(p_values, dtype=pl.Float64)


def by_unit(per_query: pl.DataFrame, key: str, units: pl.DataFrame | None) -> pl.DataFrame:
    """``per_query``'s ``key`` as the mean over each unit's requests (the unit named
    ``request_id``, so tests and intervals read it as before); unchanged without units."""
    if units is None or key not in per_query.columns:
        return per_query
    return (
        per_query.select("request_id", key)
        .filter(pl.col(key).is_not_nan() & pl.col(key).is_not_null())
        .join(units, on="request_id")
        .group_by("unit")
        .agg(pl.col(key).mean())
        .sort("unit")
        .rename({"unit": "request_id"})
    )


def paired_test(a: pl.DataFrame, b: pl.DataFrame, key: str) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value over the queries both score (None if undefined)."""
    joined = (
        a.select("request_id", pl.col(key).alias("a"))
        .join(b.select("request_id", pl.col(key).alias("b")), on="request_id")
        .drop_nans()
        .drop_nulls()
    )
    differences = (joined["a"] - joined["b"]).to_numpy()
    if len(differences) < 2 or np.allclose(differences, 0):
        return None
    return float(wilcoxon(joined["a"].to_numpy(), joined["b"].to_numpy()).pvalue)


def to_markdown(table: pl.DataFrame, columns: list[Column], alpha: float = 0.05) -> str:
    headers = ["model", *[c.title for c in columns], "fit s", "peak MiB"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    best = {c.key: _best_mean(table, c.key) for c in columns}
    for row in table.iter_rows(named=True):
        cells = [row["model"]]
        for column in columns:
            cells.append(format_cell(row, column.key, best[column.key], alpha))
        cells.append(f"{row['fit_seconds:mean']:.1f}" if row["fit_seconds:mean"] else "")
        cells.append(f"{row['peak_mb:max']:.0f}" if row["peak_mb:max"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_mean(table: pl.DataFrame, key: str) -> float | None:
    models = table.filter(~pl.col("reference") & ~pl.col("stale"))[f"{key}:mean"]
    models = models.drop_nans().drop_nulls()
    return float(models.max()) if len(models) else None


def format_cell(row: dict, key: str, best: float | None, alpha: float) -> str:
    """``mean ± std`` (the mean alone for one seed), bold where it is the ``best`` mean, ``*``
    where p < alpha."""
    mean, std, p = row[f"{key}:mean"], row[f"{key}:std"], row[f"{key}:p"]
    if mean is None or np.isnan(mean):
        return "–"
    one_value = row["reference"] or row.get("seeds", 2) < 2  # no spread to show
    text = f"{mean:.4f}" if one_value else f"{mean:.4f} ± {std:.4f}"
    if not (row["reference"] or row.get("stale")) and best is not None and mean == best:
        text = f"**{text}**"
    if p is not None and p < alpha:
        text += " *"
    return text
