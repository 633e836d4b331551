"""`rankbench bench` end to end on the tiny preset: tables, records, W&B runs, resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from benchmarks.cli import main
from benchmarks.config import load_spec
from benchmarks.records import cpu_model
from benchmarks.runner import run_benchmark
from models import REGISTRY, Ranker, register

RECORD_FIELDS = {
    "code_hash",
    "run_id",
    "model",
    "seed",
    "config",
    "config_hash",
    "git",
    "packages",
    "environment",
    "split_hash",
    "dataset_fingerprint",
    "wall_time_s",
    "peak_memory_mb",
    "preparation",
    "metrics",
    "finished_at",
}


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_MODE")  # the defaults a user gets, W&B's too
        args = ["bench", "--preset", "tiny", "--models", "xgboost", "--seeds", "0", "1"]
        args += ["--out", str(out), "--quiet", "--set", "model_config.xgboost.n_estimators=40"]
        code = main(args)
    return code, out / "simulator-tiny"


def test_bench_writes_tables_records_and_plot(tiny_bench, capsys):
    code, folder = tiny_bench
    assert code == 0
    summary = (folder / "summary.md").read_text()
    assert "Reproduce with: `rankbench bench --preset tiny" in summary
    assert "| xgboost |" in summary and "ref: logged order" in summary
    assert "NDCG@10 true" in summary and "Queries left out" in summary
    table = pl.read_csv(folder / "summary.csv")
    assert table.filter(pl.col("model") == "xgboost")["seeds"].item() == 2
    assert (folder / "ndcg.png").stat().st_size > 1000
    first = json.loads((folder / "runs" / "xgboost-seed0.json").read_text())["preparation"]
    assert (
        f"in the process that trained xgboost-seed0: load {first['load']['seconds']:.1f} s, "
        f"peak {first['load']['peak_mb']:,.0f} MiB; labels" in summary
    )
    # Every run trained here: the table names this processor and how many runs it made.
    runs = len(list((folder / "runs").glob("*.json")))
    assert f"Processors the runs trained on: {cpu_model()} ({runs} runs)." in summary
    for seed in (0, 1):
        record = json.loads((folder / "runs" / f"xgboost-seed{seed}.json").read_text())
        assert RECORD_FIELDS <= set(record)
        assert record["environment"]["cpu"] == cpu_model()
        assert 0 <= record["metrics"]["true_relevance"]["ndcg@10"]["mean"] <= 1
        stages = record["preparation"]
        assert list(stages) == ["load", "labels", "features"]
        assert all(s["seconds"] > 0 and s["peak_mb"] > 100 for s in stages.values())
        per_query = pl.read_parquet(folder / "runs" / f"xgboost-seed{seed}.queries.parquet")
        assert (
            per_query.height
            == record["metrics"]["true_relevance"]["ndcg@10"]["counted"]
            + record["metrics"]["true_relevance"]["ndcg@10"]["left_out"]
        )


def test_bench_logs_offline_wandb_runs(tiny_bench):
    _, folder = tiny_bench
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # one per model x seed, and the summary table
    assert all(list(run.glob("*.wandb")) for run in runs)


def test_rerun_skips_finished_runs(tiny_bench, capsys):
    _, folder = tiny_bench
    before = (folder / "runs" / "xgboost-seed0.json").read_text()
    code = main(
        [
            "bench",
            "--preset",
            "tiny",
            "--models",
            "xgboost",
            "--seeds",
            "0",
            "1",
            "--out",
            str(folder.parent),
            "--wandb",
            "disabled",
            "--quiet",
            "--set",
            "model_config.xgboost.n_estimators=40",
        ]
    )
    assert code == 0
    assert "skip xgboost-seed0" in capsys.readouterr().out
    assert (folder / "runs" / "xgboost-seed0.json").read_text() == before


def test_a_plot_that_fails_is_one_warning_and_the_tables_are_still_written(
    tiny_bench, capsys, monkeypatch
):
    _, folder = tiny_bench
    import benchmarks.plots

    def broken(*args, **kwargs):
        raise RuntimeError("no font found\n" + "x" * 10_000)

    monkeypatch.setattr(benchmarks.plots, "_draw_summary", broken)
    (folder / "summary.csv").unlink()
    args = ["bench", "--preset", "tiny", "--models", "xgboost", "--seeds", "0", "1"]
    args += ["--out", str(folder.parent), "--wandb", "disabled", "--quiet"]
    code = main([*args, "--set", "model_config.xgboost.n_estimators=40"])
    err = capsys.readouterr().err
    assert code == 0, err
    warning = [line for line in err.splitlines() if "ndcg.png not drawn" in line]
    assert len(warning) == 1 and warning[0].endswith("no font found")
    assert (folder / "summary.csv").is_file() and not (folder / "ndcg.png").exists()


class _Flaky(Ranker):
    """Scores by a feature; crashes on seed 1 while ``crash`` is set (a killed run)."""

    @dataclass(frozen=True)
    class Settings:
        column: int = 0

    crash = True

    def fit(self, datamodule):
        if self.seed == 1 and _Flaky.crash:
            raise RuntimeError("simulated crash")

    def predict(self, datamodule, split):
        return datamodule.arrays(split).numeric[:, self.config["column"]].astype(np.float64)


def test_resume_after_a_crash(tmp_path):
    register("test_flaky")(_Flaky)
    try:
        config = load_spec(
            overrides={
                "preset": "tiny",
                "models": ["test_flaky"],
                "seeds": [0, 1],
                "output": str(tmp_path),
                "wandb": {"mode": "disabled"},
            }
        )
        outcome = run_benchmark(config, "test", progress=False, echo=lambda *_: None)
        assert outcome.ran == ["test_flaky-seed0"]
        assert outcome.failed == ["test_flaky-seed1 at fit: RuntimeError: simulated crash"]
        folder = tmp_path / "simulator-tiny"
        runs = folder / "runs"
        assert sorted(p.name for p in runs.iterdir()) == [
            "failed",
            "test_flaky-seed0.json",
            "test_flaky-seed0.queries.parquet",
        ]  # nothing half-written; the failure is a record of its own
        failure = json.loads((runs / "failed" / "test_flaky-seed1.json").read_text())
        assert (failure["model"], failure["seed"], failure["stage"]) == ("test_flaky", 1, "fit")
        summary = (folder / "summary.md").read_text()
        assert "| test_flaky (failed; seeds 1) | – |" in summary
        assert "test_flaky-seed1 at fit: RuntimeError: simulated crash" in summary
        _Flaky.crash = False
        outcome = run_benchmark(config, "test", progress=False, echo=lambda *_: None)
        assert outcome.skipped == ["test_flaky-seed0"] and outcome.ran == ["test_flaky-seed1"]
        assert outcome.failed == [] and not list((runs / "failed").iterdir())
    finally:
        REGISTRY.pop("test_flaky")


def test_rerun_flag_retrains(tiny_bench, capsys):
    _, folder = tiny_bench
    code = main(
        [
            "bench",
            "--preset",
            "tiny",
            "--models",
            "xgboost",
            "--seeds",
            "0",
            "--out",
            str(folder.parent),
            "--wandb",
            "disabled",
            "--quiet",
            "--rerun",
            "--set",
            "model_config.xgboost.n_estimators=40",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "skip xgboost-seed0" not in out and "done xgboost-seed0" in out


def _readme_baseline(heading: str = "### Add a baseline in one file") -> str:
    """An "add a baseline in one file" example of the README, verbatim."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split(heading + "\n", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_the_readme_neural_baseline_runs_through_the_driver(tmp_path):
    code = _readme_baseline("### Add a neural baseline in one file")
    assert len(code.strip().splitlines()) < 40
    plugin = tmp_path / "my_net.py"
    plugin.write_text(code)
    args = ["bench", "--preset", "tiny", "--models", "mlp", "--seeds", "0", "--import"]
    args += [str(plugin), "--out", str(tmp_path), "--wandb", "disabled", "--quiet"]
    try:
        assert main([*args, "--set", "model_config.mlp.max_epochs=3"]) == 0
        record = json.loads((tmp_path / "simulator-tiny" / "runs" / "mlp-seed0.json").read_text())
        assert record["training"]["epochs"] >= 1 and record["config"]["model"] == "mlp"
        summary = (tmp_path / "simulator-tiny" / "summary.md").read_text()
        assert "| mlp |" in summary
    finally:
        REGISTRY.pop("mlp", None)


def test_the_readme_baseline_runs_through_the_driver(tmp_path, capsys):
    code = _readme_baseline()
    assert len(code.strip().splitlines()) < 60
    plugin = tmp_path / "my_ranker.py"
    plugin.write_text(code)
    try:
        exit_code = main(
            [
                "bench",
                "--preset",
                "tiny",
                "--models",
                "ridge",
                "--seeds",
                "0",
                "--import",
                str(plugin),
                "--out",
                str(tmp_path),
                "--wandb",
                "disabled",
                "--quiet",
            ]
        )
        assert exit_code == 0
        assert "| ridge |" in (tmp_path / "simulator-tiny" / "summary.md").read_text()
        # Editing the plugin makes its records stale: the next run retrains it.
        plugin.write_text(code + "\n# tuned\n")
        REGISTRY.pop("ridge")
        capsys.readouterr()
        assert (
            main(
                [
                    "bench",
                    "--preset",
                    "tiny",
                    "--models",
                    "ridge",
                    "--seeds",
                    "0",
                    "--import",
                    str(plugin),
                    "--out",
                    str(tmp_path),
                    "--wandb",
                    "disabled",
                    "--quiet",
                ]
            )
            == 0
        )
        assert "done ridge-seed0" in capsys.readouterr().out
    finally:
        REGISTRY.pop("ridge", None)


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    code = main(["bench", "--preset", "tiny", "--models", "nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("rankbench: error: models: unknown model 'nope'")
    assert len(err.splitlines()) == 1


def test_bad_log_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "products.csv").write_text("product_id,title\n1,a\n")
    (tmp_path / "impressions.csv").write_text(
        "request_id,query,product_id,position,click\n1,q,2,1,0\n"
    )
    code = main(
        [
            "bench",
            "--dataset",
            "logdir",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--wandb",
            "disabled",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "impressions.csv: column 'product_id'" in err and "catalog" in err
    assert not list((tmp_path / "out").rglob("*.json"))  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "seeds=0"], "seeds must be a list, e.g."),
        (["--set", "seeds=[0, x]"], "seeds[1] must be a whole number, not 'x'"),
        (["--set", "metrics.alhpa=0.5"], "--set: metrics: unknown setting(s) alhpa; known: "),
        (["--set", "metrics.gain=log"], "metrics.gain must be one of exponential, linear"),
        (["--set", "data.labels.encoder.max_lenght=8"], "data.labels.encoder: unknown setting"),
        (["--set", "data.batch_size=lots"], "data.batch_size must be a whole number"),
        (["--set", "simulator.positon_bias=2"], "simulator: unknown setting(s) positon_bias"),
        (["--set", "simulator.position_bias=high"], "simulator.position_bias must be a number"),
        (["--models", "xgbost"], "models: unknown model 'xgbost'; registered: "),
        (["--set", "data.split.by=[oops"], "not valid YAML"),
        (["--set", "model_config.dcn_v2.max_epochs=abc"], "max_epochs must be a whole number"),
        (["--set", "model_config.xgbost.max_depth=3"], "model_config.xgbost: unknown model"),
        (["--set", "model_config.mmoe.task_weights=3"], "task_weights must be a mapping"),
        (["--threads", "0"], "threads must be from 1 to"),
        (["--strategy", "sideways"], "trainer: You selected an invalid strategy name"),
        (["--precision", "17"], "trainer: Precision '17' is invalid"),
        (["--accelerator", "cpu", "--devices", "64"], "trainer.devices: 64 CPU processes on"),
        (["--num-nodes", "0"], "trainer.num_nodes must be at least 1"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, args, message):
    code = main(
        [
            "bench",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path),
            "--wandb",
            "disabled",
            "--quiet",
            *args,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_a_gpu_where_there_is_none_is_a_one_line_error(tmp_path, capsys):
    args = ["bench", "--preset", "tiny", "--models", "mmoe", "--out", str(tmp_path)]
    assert main([*args, "--accelerator", "gpu", "--wandb", "disabled", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rankbench: error: trainer.accelerator: gpu asked for, but torch")
    assert not (tmp_path / "simulator-tiny").exists()  # before any data work


def test_a_setting_the_data_refuses_fails_that_run_in_one_line(tmp_path, capsys):
    # Whether the target is a training task is known once the data is ready: the run fails
    # with a record and the command says so in one line, exiting 1.
    args = ["bench", "--preset", "tiny", "--models", "xgboost", "--seeds", "0"]
    args += ["--out", str(tmp_path), "--wandb", "disabled", "--quiet"]
    assert main([*args, "--set", "model_config.xgboost.target=true_relevance"]) == 1
    err = capsys.readouterr().err.strip()
    assert "xgboost-seed0 at fit" in err and "not a training task" in err
    assert len(err.splitlines()) == 1


def test_records_name_the_commit_they_ran_at():
    from benchmarks.records import git_commit

    info = git_commit()
    if info["commit"] is None:
        pytest.skip("not a git checkout")
    assert len(info["commit"]) == 40 and isinstance(info["dirty"], bool)


def test_help_imports_neither_torch_nor_polars():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from benchmarks import cli\n"
        "try:\n"
        "    cli.main(['bench', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'polars', 'lightning') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
