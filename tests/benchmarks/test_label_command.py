"""`rankbench label` end to end on the tiny preset."""

import polars as pl

from benchmarks.cli import main


def test_label_writes_labels_curve_and_report(tmp_path, capsys):
    out = tmp_path / "labels"
    assert main(["label", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    pairs = pl.read_parquet(out / "labels.parquet")
    assert set(pairs["grade"].unique()) <= {0, 1, 2, 3, 4}
    assert {"exposure", "click_rate", "similarity", "score"} <= set(pairs.columns)
    curve = pl.read_csv(out / "propensity.csv")
    assert {"position", "propensity", "true"} <= set(curve.columns)
    assert (out / "propensity.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "Reproduce with: `rankbench label --preset tiny" in report
    assert "## Label distribution" in report and "## Agreement with the true relevance" in report


def test_label_without_debiasing_says_so(tmp_path, capsys):
    out = tmp_path / "labels"
    code = main(
        [
            "label",
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--quiet",
            "--set",
            "data.labels.labeling.debias=false",
        ]
    )
    assert code == 0
    report = (out / "report.md").read_text()
    assert "not debiased" in report and not (out / "propensity.csv").exists()
