"""Quality of the labels derived without annotation, measured against the simulator's truth.

    python benchmarks/scripts/label_quality.py [--preset default] [--seeds 0 1 2]

Prints (and writes to results/labels/quality.md):

1. Position bias: the largest relative error of the estimated examination probabilities at
   positions 1-10, with interventions (``intervention_rate`` 0.1) and without (0, so
   regression-EM), at position-bias strengths 0.5, 1.0 (default) and 2.0, on the default
   log (200k impressions) and on the large one (20M impressions).
2. Label quality: for each test request (the last 10% by time), its items ranked by the
   derived grade, by raw click rate and by similarity alone, against true relevance: NDCG@10
   and Kendall's tau-b, mean ± std over simulator seeds.
3. Components: the same for the derived labels without debiasing, without similarity and
   without smoothing.

Labels are derived from the whole log, as an annotator would label it; only the evaluation
is restricted to the test requests.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.label_quality import agreement  # noqa: E402
from benchmarks.records import atomic_write_text  # noqa: E402
from datamodules.labels import LabelConfig, label_log, pair_similarities  # noqa: E402
from datamodules.simulator import preset, simulate  # noqa: E402
from datamodules.splits import SplitConfig, assign_splits  # noqa: E402
from datamodules.tables import validate_log  # noqa: E402
from datamodules.text_encoding import TextEncoder  # noqa: E402
from labeling.propensity import estimate_propensities  # noqa: E402
from labeling.relevance import LabelingConfig  # noqa: E402

BIAS_STRENGTHS = (0.5, 1.0, 2.0)
VARIANTS = {
    "derived (full)": {},
    "without debiasing": {"debias": False},
    "without similarity": {"use_similarity": False},
    "without smoothing": {"smoothing": False},
}


def propensity_errors(preset_names: list[str], seed: int) -> pl.DataFrame:
    rows = []
    for preset_name in preset_names:
        for bias in BIAS_STRENGTHS:
            for with_interventions in (True, False):
                config = preset(
                    preset_name,
                    seed=seed,
                    position_bias=bias,
                    intervention_rate=0.1 if with_interventions else 0.0,
                )
                log = simulate(config)
                method = "intervention" if with_interventions else "regression_em"
                estimate = estimate_propensities(log.impressions, method=method)
                curve = estimate.curve.join(log.truth.examination, on="position").filter(
                    pl.col("position") <= 10
                )
                error = (curve["propensity"] / curve["examination"] - 1).abs()
                rows.append(
                    {
                        "log": f"{preset_name} ({log.impressions.height:,} impressions)",
                        "position_bias": bias,
                        "estimator": method,
                        "max_relative_error": float(error.max()),
                        "target": 0.10 if with_interventions else 0.20,
                    }
                )
                del log
    return pl.DataFrame(rows).with_columns(met=pl.col("max_relative_error") <= pl.col("target"))


def label_agreement(preset_name: str, seed: int, encoder: TextEncoder) -> pl.DataFrame:
    log = validate_log(simulate(preset(preset_name, seed=seed)))
    similarity = pair_similarities(log, encoder)
    impressions = log.impressions
    test_requests = assign_splits(impressions, SplitConfig()).filter(pl.col("split") == "test")
    test = impressions.join(test_requests.select("request_id"), on="request_id")
    truth = test.join(
        log.truth.relevance, on=["request_id", "product_id"], how="left", maintain_order="left"
    )["true_relevance"].to_numpy()

    labels: dict[str, np.ndarray] = {}
    for name, switches in VARIANTS.items():
        config = LabelConfig(labeling=replace(LabelingConfig(), **switches))
        derived = label_log(impressions, similarity, config)
        labels[name] = derived.for_impressions(test).to_numpy()
        if name == "derived (full)":
            pairs = test.select("query", "product_id").join(
                derived.pairs, on=["query", "product_id"], how="left", maintain_order="left"
            )
            labels["raw click rate"] = (pairs["click"] / pairs["impressions"]).to_numpy()
            labels["similarity alone"] = pairs["similarity"].to_numpy()
    table = agreement(truth, labels, test["request_id"].to_numpy())
    return table.with_columns(seed=pl.lit(seed))


def mean_std(table: pl.DataFrame) -> pl.DataFrame:
    return table.group_by("label", maintain_order=True).agg(
        pl.col("ndcg@10").mean().alias("ndcg@10 mean"),
        pl.col("ndcg@10").std().alias("± std"),
        pl.col("kendall_tau").mean().alias("tau mean"),
        pl.col("kendall_tau").std().alias("± sd"),
    )


def markdown(table: pl.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.iter_rows():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--propensity-presets",
        nargs="+",
        default=["default", "large"],
        help="logs the position-bias estimates are checked on",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "labels" / "quality.md")
    args = parser.parse_args()
    command = (
        f"python benchmarks/scripts/label_quality.py --preset {args.preset} --seeds "
        + " ".join(map(str, args.seeds))
        + " --propensity-presets "
        + " ".join(args.propensity_presets)
    )

    errors = propensity_errors(args.propensity_presets, args.seeds[0])
    encoder = TextEncoder()
    agreements = pl.concat([label_agreement(args.preset, s, encoder) for s in args.seeds])
    summary = mean_std(agreements)
    main_rows = summary.filter(
        pl.col("label").is_in(["derived (full)", "raw click rate", "similarity alone"])
    )
    components = summary.filter(pl.col("label").is_in(list(VARIANTS)))
    derived = summary.filter(pl.col("label") == "derived (full)").row(0, named=True)
    beaten = all(
        derived["ndcg@10 mean"] > row["ndcg@10 mean"] and derived["tau mean"] > row["tau mean"]
        for row in main_rows.filter(pl.col("label") != "derived (full)").iter_rows(named=True)
    )
    text = (
        "\n\n".join(
            [
                "# Label quality on the simulator",
                f"Reproduce with: `{command}`",
                f"## Position bias: max relative error at positions 1-10 (simulator seed "
                f"{args.seeds[0]})",
                markdown(errors),
                f"## Labels against true relevance, test requests, seeds {args.seeds}",
                markdown(main_rows),
                f"Derived labels beat raw click rate and similarity alone on both measures: "
                f"{'yes' if beaten else 'NO'}.",
                "## Components",
                markdown(components),
            ]
        )
        + "\n"
    )
    print(text)
    atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
