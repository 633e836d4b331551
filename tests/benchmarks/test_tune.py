"""`rankbench tune` on the tiny preset: studies, validation-only selection, resume, refusal,
bad input, and `bench --tuned`."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import yaml
from sklearn.metrics import ndcg_score

from benchmarks import tune
from benchmarks.cli import main
from benchmarks.config import load_spec
from benchmarks.runner import prepare_datamodule
from benchmarks.search_spaces import SPACES
from benchmarks.spec import TuneSpec
from datamodules.settings import typed_settings
from models import REGISTRY, Ranker, create_ranker, get_ranker, register
from models.xgboost_ranker import XGBoostRanker

FEW_TREES = ["--set", "model_config.xgboost.n_estimators=20"]
# One thread: on a shared machine, XGBoost's threads waiting for each other at every round
# cost more than these small fits take (the data and XGBoost are the same at any count).
ONE_THREAD = ["--threads", "1"]
FOLDER = "simulator-tiny-tuning"


def _tune(out, *extra: str, models=("xgboost",), trials: int = 3, wandb: str = "disabled"):
    args = ["tune", "--preset", "tiny", "--models", *models, "--trials", str(trials)]
    args += ["--out", str(out), "--wandb", wandb, "--quiet", *ONE_THREAD, *FEW_TREES, *extra]
    return main(args)


def _trials(folder, model: str = "xgboost") -> list:
    study = optuna.load_study(study_name=model, storage=f"sqlite:///{folder / f'{model}.sqlite3'}")
    return study.get_trials()


def _counted(folder, model: str = "xgboost") -> list:
    finished = optuna.trial.TrialState.COMPLETE
    return [t for t in _trials(folder, model) if t.state == finished]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 3-trial XGBoost study, logged to W&B offline, with every split a trial scored."""
    out = tmp_path_factory.mktemp("tuning")
    scored: list[str] = []
    predict = XGBoostRanker.predict

    def spy(self, datamodule, split):
        scored.append(split)
        return predict(self, datamodule, split)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(XGBoostRanker, "predict", spy)
        code = _tune(out, wandb="offline")
    return SimpleNamespace(code=code, folder=out / FOLDER, scored=scored)


def _best(folder, model: str = "xgboost") -> dict:
    return yaml.safe_load((folder / f"{model}.best.yaml").read_text())


def test_a_study_writes_its_sqlite_its_best_settings_and_one_wandb_run(study):
    assert study.code == 0
    trials = _counted(study.folder)
    assert [t.number for t in trials] == [0, 1, 2]
    best = _best(study.folder)
    top = max(trials, key=lambda t: t.value)
    assert (best["trial"], best["value"], best["trials_done"]) == (top.number, top.value, 3)
    assert best["settings"] == top.user_attrs["settings"] and best["stopped_by"] == "trials"
    assert set(best["settings"]) <= set(get_ranker("xgboost").default_settings())
    budget = {"trials": 3, "timeout_s": TuneSpec().timeout_s, "sampler": "tpe", "seed": 0}
    assert best["budget"] == budget  # the budget the study ran under, kept with its result
    attrs = optuna.load_study(
        study_name="xgboost", storage=f"sqlite:///{study.folder / 'xgboost.sqlite3'}"
    ).user_attrs
    assert {"dataset_fingerprint", "split_hash", "code_hash", "tune"} <= set(attrs)
    assert attrs["dataset_fingerprint"] == best["tuned_on"]["dataset_fingerprint"]
    assert len(list((study.folder / "wandb").glob("offline-run-*"))) == 1


def test_trials_are_chosen_on_the_validation_split_alone(study):
    assert study.scored == ["val"] * 3  # the test split is never scored
    # The stored value is the validation NDCG@10 of the `relevance` label, recomputed here
    # with scikit-learn (gain 2^rel - 1 given as its linear gain; queries without a
    # positive left out, as the suite does).
    best = _best(study.folder)
    spec = load_spec(overrides={"preset": "tiny"}, assignments=[FEW_TREES[1]])
    datamodule = prepare_datamodule(spec, progress=False, echo=lambda *_: None)
    ranker = create_ranker("xgboost", {**spec.model_config["xgboost"], **best["settings"]})
    ranker.fit(datamodule)
    val = datamodule.arrays("val")
    scores = ranker.predict(datamodule, "val")
    values = []
    for start, end in zip(val.offsets[:-1], val.offsets[1:], strict=True):
        gains = 2.0 ** val.labels["relevance"][start:end] - 1
        if gains.any():
            values.append(ndcg_score([gains], [scores[start:end]], k=10))
    assert best["value"] == pytest.approx(np.mean(values), abs=1e-12)


def test_a_rerun_adds_no_trial_and_a_resumed_study_draws_what_one_run_draws(
    study, tmp_path, capsys
):
    resumed = tmp_path / "resumed"
    shutil.copytree(study.folder, resumed / FOLDER)
    assert _tune(resumed) == 0
    assert "| xgboost | 3 | 0 | 0 |" in capsys.readouterr().out  # nothing left to run

    # A larger budget, interrupted during its second new trial: that trial does not count.
    calls = []
    objective = tune.validation_ndcg

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return objective(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tune, "validation_ndcg", interrupted)
        assert _tune(resumed, trials=5) == 130
    assert len(_counted(resumed / FOLDER)) == 4
    assert _tune(resumed, trials=5) == 0
    assert "| xgboost | 5 | 1 | 0 |" in capsys.readouterr().out

    # The same seed in one uninterrupted study: the same five trials, in the same order.
    assert _tune(tmp_path / "once", trials=5) == 0
    drawn = [t.params for t in _counted(resumed / FOLDER)]
    assert drawn == [t.params for t in _counted(tmp_path / "once" / FOLDER)]
    assert len({json.dumps(p, sort_keys=True) for p in drawn}) == 5
    assert not (tmp_path / "once" / FOLDER / "wandb").exists()  # wandb disabled: no runs


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_seeded_sampler_draws_the_same_trials_past_tpes_random_start(sampler):
    """Twelve trials of a stand-in objective (TPE models the last two), twice, and once
    stopped after seven and continued by a new study object: the same draws."""

    def draw(seed: int, stops=()) -> list[dict]:
        storage = optuna.storages.InMemoryStorage()
        study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
        for index in range(12):
            if index in stops:  # a new command: the study loaded again from its storage
                study = optuna.load_study(study_name="s", storage=storage)
            study.sampler = tune.sampler_for(TuneSpec(sampler=sampler, seed=seed), index)
            trial = study.ask()
            settings = SPACES["xgboost"].suggest(trial)
            study.tell(trial, -abs(np.log10(settings["learning_rate"]) + 1))
        return [t.params for t in study.trials]

    first = draw(3)
    assert first == draw(3) == draw(3, stops=(7,))
    assert first != draw(4) and len({json.dumps(p, sort_keys=True) for p in first}) == 12


def test_a_study_made_with_other_data_is_refused(study, tmp_path, capsys):
    # Another click model strength: the same catalog and texts (nothing to encode again),
    # other clicks, so other labels and another dataset fingerprint.
    shutil.copytree(study.folder, tmp_path / FOLDER)
    assert _tune(tmp_path, "--set", "simulator.position_bias=2.0") == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "xgboost.sqlite3: the study differs from this run in data (" in err
    )
    assert "delete it to start over" in err
    assert len(_counted(tmp_path / FOLDER)) == 3  # untouched


def test_a_neural_study_stops_at_its_time_cap(tmp_path):
    # Any first trial outlasts a cap of a millisecond: no second trial starts.
    args = ["--set", "model_config.mmoe.max_epochs=1", "--sampler", "random", "--timeout", "1e-3"]
    assert _tune(tmp_path, *args, models=("mmoe",), trials=3) == 0
    best = _best(tmp_path / FOLDER, "mmoe")
    assert (best["trials_done"], best["stopped_by"]) == (1, "timeout") and 0 < best["value"] <= 1
    assert not (tmp_path / FOLDER / "scratch").exists()  # the trials' checkpoints removed


def test_every_search_space_draws_settings_its_model_takes():
    for model, space in SPACES.items():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(20):
            settings = space.suggest(study.ask())
            typed_settings(get_ranker(model).Settings, settings, model)  # raises if not
        assert space.SOURCE.strip()


@dataclass(frozen=True)
class _NoSpaceSettings:
    column: int = 0


class _NoSpace(Ranker):
    Settings = _NoSpaceSettings

    def fit(self, datamodule):
        pass

    def predict(self, datamodule, split):
        return datamodule.arrays(split).numeric[:, 0].astype(np.float64)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "tune.trials must be at least 1"),
        (["--trials", "-2"], "tune.trials must be at least 1"),
        (["--sampler", "grid"], "tune.sampler must be one of tpe, random, not 'grid'"),
        (["--timeout", "0"], "tune.timeout_s must be positive"),
        (["--models", "test_no_space"], "no search space for model 'test_no_space'"),
    ],
)
def test_bad_tuning_input_is_a_one_line_error_before_any_data_work(tmp_path, capsys, args, message):
    register("test_no_space")(_NoSpace)
    try:
        base = ["tune", "--preset", "tiny", "--out", str(tmp_path), "--wandb", "disabled"]
        assert main([*base, "--quiet", *args]) == 2
    finally:
        REGISTRY.pop("test_no_space")
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing prepared, nothing written


def _bench(out, *extra: str) -> int:
    args = ["bench", "--preset", "tiny", "--models", "xgboost", "--seeds", "0", *ONE_THREAD]
    return main([*args, "--out", str(out), "--wandb", "disabled", "--quiet", *FEW_TREES, *extra])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such folder"),
        ({}, "no tuned settings for xgboost (xgboost.best.yaml missing)"),
        ({"xgboost.best.yaml": "model: xgboost\nsettings: {depth: 3}\n"}, "unknown setting(s)"),
        ({"xgboost.best.yaml": "model: mmoe\nsettings: {}\n"}, "settings for 'mmoe'"),
    ],
)
def test_a_missing_or_bad_tuned_folder_is_a_one_line_error(tmp_path, capsys, content, message):
    tuned = tmp_path / "tuned"
    if content is not None:
        tuned.mkdir()
        for name, text in content.items():
            (tuned / name).write_text(text)
    assert _bench(tmp_path / "out", "--tuned", str(tuned)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # before any data work


def test_bench_tuned_shows_each_models_default_and_tuned_rows(study, tmp_path):
    assert _bench(tmp_path, "--tuned", str(study.folder)) == 0
    folder = tmp_path / "simulator-tiny"
    summary = (folder / "summary.md").read_text()
    assert "| xgboost |" in summary and "| xgboost (tuned) |" in summary
    assert f"--tuned {study.folder}" in summary  # the command that remakes the table
    record = json.loads((folder / "runs" / "xgboost+tuned-seed0.json").read_text())
    best = _best(study.folder)
    assert record["tuned"]["trial"] == best["trial"]
    # Under the table: where the tuned settings come from, the budget, what each study used.
    assert (
        f"Tuned rows (`(tuned)`): each model's best settings from `{study.folder}`, tuned on "
        "simulator-tiny, with a budget per model of 3 trials and a 3600 s time cap (tpe "
        "sampler, seed 0), chosen on validation NDCG@10 of relevance (never the test split): "
        f"xgboost 3 trials, best trial {best['trial']} (validation {best['value']:.4f})."
    ) in " ".join(summary.split())
    for key, value in best["settings"].items():
        assert record["config"]["model_config"][key] == pytest.approx(value)
    default = json.loads((folder / "runs" / "xgboost-seed0.json").read_text())
    assert default["config"]["model_config"]["max_depth"] == 6 and "tuned" not in default
    # A later command without --tuned keeps the tuned row, valid (the folder accumulates).
    assert _bench(tmp_path) == 0
    summary = (folder / "summary.md").read_text()
    assert "| xgboost (tuned) |" in summary and "stale" not in summary
