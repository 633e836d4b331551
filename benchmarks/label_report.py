"""``rankbench label``: derive relevance labels for a whole log and report on them.

Writes to the output folder:

- ``labels.parquet``: one row per (query, product) with every step of the derivation
  (impressions, exposure, counts, smoothed debiased rates, similarity, scores, grade);
- ``propensity.csv`` and ``propensity.png``: the estimated examination curve, with the
  estimator each position's value came from (``source``: interventions, regression-EM,
  regression-EM anchored on the interventions, or filled from the position above), beside
  the true one where the dataset knows it (the simulator);
- ``report.md``: the estimator used and its notes, the fitted priors, the label
  distribution and, where the truth is known, the labels' agreement with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from benchmarks.config import source_for  # noqa: E402
from benchmarks.label_quality import agreement  # noqa: E402
from benchmarks.plots import save_figure  # noqa: E402
from benchmarks.records import atomic_write_parquet  # noqa: E402
from benchmarks.spec import RunSpec  # noqa: E402
from datamodules.atomic import atomic_write_text  # noqa: E402
from datamodules.labels import label_log, labels_for, pair_similarities  # noqa: E402
from datamodules.search_log import load_split_log  # noqa: E402
from datamodules.tables import SearchLog  # noqa: E402
from datamodules.text_encoding import TextEncoder  # noqa: E402
from labeling.behavioural import behavioural_grade  # noqa: E402
from labeling.relevance import DerivedLabels  # noqa: E402


@dataclass
class LabelRun:
    log: SearchLog
    labels: DerivedLabels
    seconds: float
    click_model: str | None = None  # what made the clicks, where known (the simulator)


def derive_labels_for(spec: RunSpec, progress: bool = True) -> LabelRun:
    """Load the dataset ``spec`` names and derive labels for the whole log."""
    source = source_for(spec, progress)
    log, _, judged = load_split_log(source, spec.data.split)  # as a benchmark would load it
    if judged:
        raise ValueError(
            f"{spec.dataset}: a judged dataset already has graded labels; "
            "there are no clicks to derive them from (use rankbench bench, or simulate clicks "
            "on it with dataset_options.simulate_clicks)"
        )
    label_config = labels_for(spec.data.labels, log)  # behaviour alone without titles
    similarity = None
    if label_config.labeling.use_similarity:
        similarity = pair_similarities(log, TextEncoder(label_config.encoder), progress)
    start = time.perf_counter()
    cluster = None
    if spec.dask is not None:  # the log's counts on the cluster's workers; the same labels
        from datamodules.cluster import connect

        cluster = connect(spec.dask)
    labels = label_log(log.impressions, similarity, label_config, cluster)
    described = source.describe()
    click_model = (described.get("simulator") or described.get("simulate_clicks") or {}).get(
        "click_model"
    )
    return LabelRun(log, labels, time.perf_counter() - start, click_model)


def write_label_report(run: LabelRun, folder: Path, command: str) -> str:
    folder = Path(folder)
    atomic_write_parquet(folder / "labels.parquet", run.labels.pairs)
    curve = _propensity_table(run)
    sections = [f"# Labels: {folder.name}", f"Reproduce with: `{command}`"]
    if curve is not None:
        atomic_write_text(folder / "propensity.csv", curve.write_csv())
        _plot_propensity(
            curve, folder / "propensity.png", run.labels.propensity.method, run.click_model
        )
        sections += [
            f"## Position bias ({run.labels.propensity.method})",
            *([_truth_note(curve, run.click_model)] if "true" in curve.columns else []),
            _markdown(curve),
            "![propensity](propensity.png)",
        ]
    if run.labels.notes:
        sections += ["## Notes", "\n".join(f"- {note}" for note in run.labels.notes)]
    if run.labels.priors:
        sections += [
            "## Fitted Beta priors (per stratum of mean logged position)",
            "\n".join(
                f"- {name}, positions {_stratum_range(stratum)}: alpha {p.alpha:.3f}, "
                f"beta {p.beta:.3f} (mean {p.mean:.4f})"
                for name, by_stratum in run.labels.priors.items()
                for stratum, p in by_stratum.items()
            ),
        ]
    sections += ["## Label distribution", _markdown(_distribution(run))]
    if run.log.truth is not None:
        sections += [
            "## Agreement with the true relevance (all requests)",
            _markdown(agreement_with_truth(run)),
        ]
    sections.append(
        f"Labelling took {run.seconds:.2f} s for {run.log.impressions.height} "
        "impressions (text encoding excluded)."
    )
    text = "\n\n".join(sections) + "\n"
    atomic_write_text(folder / "report.md", text)
    return text


def agreement_with_truth(run: LabelRun) -> pl.DataFrame:
    """Derived labels beside raw click rate, similarity alone and the behavioural grade."""
    impressions = run.log.impressions
    truth = (
        impressions.select("request_id", "product_id")
        .join(
            run.log.truth.relevance,
            on=["request_id", "product_id"],
            how="left",
            maintain_order="left",
        )["true_relevance"]
        .to_numpy()
    )
    pairs = impressions.select("query", "product_id").join(
        run.labels.pairs, on=["query", "product_id"], how="left", maintain_order="left"
    )
    raw_ctr = pairs["click"] / pairs["impressions"]
    labels = {
        "derived grade": pairs["grade"].to_numpy(),
        "derived score": pairs["score"].to_numpy(),
        "raw click rate": raw_ctr.to_numpy(),
    }
    if pairs["similarity"].null_count() < pairs.height:
        labels["similarity alone"] = pairs["similarity"].to_numpy()
    labels["behavioural grade"] = behavioural_grade(impressions).to_numpy()
    return agreement(truth, labels, impressions["request_id"].to_numpy())


def _stratum_range(stratum: int) -> str:
    first, last = 2**stratum, 2 ** (stratum + 1) - 1
    return str(first) if first == last else f"{first}-{last}"


def _propensity_table(run: LabelRun) -> pl.DataFrame | None:
    if run.labels.propensity is None:
        return None
    curve = run.labels.propensity.curve
    if run.log.truth is not None:
        curve = curve.join(
            run.log.truth.examination.rename({"examination": "true"}), on="position", how="left"
        )
        curve = curve.with_columns(relative_error=(pl.col("propensity") / pl.col("true") - 1))
    return curve


def _truth_note(curve: pl.DataFrame, click_model: str | None) -> str:
    """What the true curve is, and how far the estimate is from it."""
    error = (curve["propensity"] - curve["true"]).abs().max()
    made_by = f"the `{click_model}` click model" if click_model else "the log's truth table"
    note = f"True examination from {made_by}; max |estimated - true| {_format(error)}."
    if click_model in ("cascade", "dbn"):
        note += (
            " Under this model a position's examination depends on the items above it: the "
            "true curve is its mean over the log, which a position-based estimate can only "
            "approximate."
        )
    return note


# A marker per source of a position's value. Filled positions are drawn hollow at the value the
# labels use for them (the nearest estimated position above).
_SOURCE_MARKERS = {
    "intervention": ("o", "interventions"),
    "regression_em": ("s", "regression-EM"),
    "regression_em_anchored": ("D", "regression-EM anchored on interventions"),
    "filled": ("o", "not estimated: filled from above"),
}


def _plot_propensity(curve: pl.DataFrame, path: Path, method: str, click_model: str | None) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    position = curve["position"].to_numpy()
    used = curve["propensity"].fill_null(strategy="forward").fill_null(1.0).to_numpy()
    ax.plot(position, used, "-", color="C0", label=f"estimated ({method})")
    for name, (marker, label) in _SOURCE_MARKERS.items():
        rows = curve["source"].to_numpy() == name
        if rows.any():
            hollow = {"markerfacecolor": "none"} if name == "filled" else {}
            ax.plot(position[rows], used[rows], marker, color="C0", label=label, **hollow)
    if "true" in curve.columns:
        ax.plot(curve["position"], curve["true"], "k--", label="true (simulator)")
    if click_model:
        ax.set_title(f"clicks from the {click_model} click model")
    ax.set_xlabel("position")
    ax.set_ylabel("examination probability (position 1 = 1)")
    ax.set_ylim(0, 1.1)
    ax.legend()
    save_figure(fig, path)


def _distribution(run: LabelRun) -> pl.DataFrame:
    grades = run.labels.for_impressions(run.log.impressions, "grade")
    table = grades.value_counts().sort("grade").rename({"count": "impressions"})
    table = table.with_columns(share=pl.col("impressions") / pl.col("impressions").sum())
    if run.log.truth is not None:
        truth = (
            run.log.truth.relevance["true_relevance"]
            .value_counts()
            .rename({"true_relevance": "grade", "count": "true_relevance_impressions"})
        )
        table = table.join(
            truth.with_columns(pl.col("grade").cast(pl.Int8)), on="grade", how="full", coalesce=True
        ).sort("grade")
    return table


def _markdown(table: pl.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * len(table.columns)]
    for row in table.iter_rows():
        lines.append("| " + " | ".join(_format(v) for v in row) + " |")
    return "\n".join(lines)


def _format(value) -> str:
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.4f}"
    return "–" if value is None else str(value)
