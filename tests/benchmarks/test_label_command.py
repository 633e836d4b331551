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


def test_label_reports_each_click_model_and_semi_synthetic_clicks(tmp_path, capsys):
    from tests.datamodules.test_letor import write_letor

    out = tmp_path / "cascade"
    argv = ["label", "--preset", "tiny", "--out", str(out), "--quiet"]
    assert main([*argv, "--set", "simulator.click_model=cascade"]) == 0
    assert "True examination from the `cascade` click model" in (out / "report.md").read_text()

    folder = str(write_letor(tmp_path / "letor"))
    judged = ["label", "--dataset", "letor", "--data", folder, "--quiet"]
    assert main([*judged, "--out", str(tmp_path / "judged")]) == 2  # no clicks to label
    assert "simulate_clicks" in capsys.readouterr().err
    clicks = [*judged, "--out", str(tmp_path / "clicks")]
    assert main([*clicks, "--set", "dataset_options.simulate_clicks.click_model=dbn"]) == 0
    report = (tmp_path / "clicks" / "report.md").read_text()
    assert "True examination from the `dbn` click model" in report
    assert "## Agreement with the true relevance" in report  # the human grades
