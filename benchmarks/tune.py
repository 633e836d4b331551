"""``rankbench tune``: every model tuned with the same budget, by Optuna.

For each model, one study (``benchmarks/tuning_store.py``: where it lives, what identifies
it) draws ``tune.trials`` trials from the model's search space
(``benchmarks/search_spaces/``) with a seeded sampler, and stops early once its trials have
taken ``tune.timeout_s`` seconds. A trial fits the model with the trial's settings over the
run's own on the training split (validation early-stops it, as in a benchmark run) and
scores the validation split's NDCG@10 of the ``relevance`` label with the suite's metric;
the test split is never scored and the simulator's true relevance never read. No trial is
pruned: trees report no epochs to prune on.

Trial ``k`` of a study is drawn by a sampler seeded with ``(tune.seed, k)``, so a study
resumed after a kill draws what an uninterrupted one would, and the same seed gives the
same trials. Trials that finished, or failed by the model's own error, count towards the
budget; a trial a killed command left running is tried again. The study's best trial is
written to ``<model>.best.yaml`` after every trial.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
from tqdm.auto import tqdm

from benchmarks.metrics import ndcg
from benchmarks.reuse import run_settings
from benchmarks.runner import prepare_datamodule
from benchmarks.search_spaces import search_space
from benchmarks.spec import RunSpec, TuneSpec
from benchmarks.tuning_store import (
    IDENTITY,
    OBJECTIVE,
    best_path,
    budget_of,
    identity_differences,
    study_identity,
    study_path,
    tuned_spec,
    tuning_folder,
    tuning_name,
    write_best,
)
from benchmarks.wandb_logging import WandbRuns
from datamodules.settings import as_mapping
from datamodules.threads import apply_threads, resolve_threads
from models import create_ranker, get_ranker
from models.devices import TrainerConfig, is_first_process


@dataclass
class StudyOutcome:
    model: str
    trials: int  # trials that count towards the budget, this command's and earlier ones'
    new: int  # run by this command
    failed: list[str]  # "trial <n>: <error>" of trials the model failed
    seconds: float  # the counted trials' wall time
    stopped_by: str  # "trials" (the budget is spent) or "timeout"
    best: dict | None  # the best file's content; None while no trial finished
    best_file: Path | None


@dataclass
class TuningOutcome:
    folder: Path
    studies: list[StudyOutcome]
    markdown: str


def run_tuning(spec: RunSpec, progress: bool = True, echo=print) -> TuningOutcome:
    """Tune every model of ``spec`` with ``spec.tune``'s budget; studies resume."""
    for model in spec.models:
        search_space(model)  # a model without one is refused before any data work
    if any(get_ranker(m).uses_trainer for m in spec.models):
        _check_one_process(spec.trainer)
    threads = apply_threads(resolve_threads(spec.threads))
    folder = tuning_folder(spec)
    datamodule = prepare_datamodule(spec, progress, echo)
    # Every study is opened, and its identity checked, before any trial runs.
    studies = {m: open_study(spec, datamodule, m, folder, threads) for m in spec.models}
    scratch = folder / "scratch"  # checkpoints of neural trials; what a kill left goes
    shutil.rmtree(scratch, ignore_errors=True)
    wandb = WandbRuns(spec.wandb.mode, spec.wandb.project, tuning_name(spec), folder)
    outcomes = []
    for model, study in studies.items():
        outcomes.append(
            tune_model(study, spec, datamodule, model, folder, wandb, scratch, progress)
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return TuningOutcome(folder, outcomes, tuning_table(outcomes, spec.tune))


def _check_one_process(trainer: TrainerConfig) -> None:
    """Trials run one after another in this process: a multi-process trainer would start
    copies of the whole command, each with its own trials."""
    devices = trainer.devices
    several = (isinstance(devices, int) and devices > 1) or (
        isinstance(devices, str) and "," in devices
    )
    if several or trainer.num_nodes > 1 or not is_first_process():
        raise ValueError(
            f"tune runs its trials in one process: set trainer.devices to 1 or auto and "
            f"num_nodes to 1 (got devices {devices}, num_nodes {trainer.num_nodes})"
        )


# ---------------------------------------------------------------------- the studies


def open_study(spec: RunSpec, datamodule, model: str, folder: Path, threads: int):
    """``model``'s study in ``folder``: created with this run's identity, or loaded when its
    stored identity is this run's; a one-line error naming what differs otherwise."""
    import optuna
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials' own lines say enough
    path = study_path(folder, model)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            storage=optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}"),
            study_name=model,
            direction="maximize",
            load_if_exists=True,
            pruner=optuna.pruners.NopPruner(),
        )
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not a readable Optuna study ({first[:200]})") from None
    now = study_identity(spec, datamodule, model, threads)
    stored = study.user_attrs
    if not stored and not study.trials:  # a new study
        for key, value in now.items():
            study.set_user_attr(key, value)
        return study
    differences = identity_differences({k: stored.get(k) for k in IDENTITY}, now)
    if differences:
        raise ValueError(
            f"{path}: the study differs from this run in {'; '.join(differences)}; delete it "
            f"to start over, or tune into another folder (--name or --out)"
        )
    return study


def counted_trials(study) -> list:
    """The trials that count towards the budget: finished ones, and those the model failed
    (a trial a killed or interrupted command left behind does not count)."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and "error" in t.user_attrs)
    ]


def sampler_for(tune: TuneSpec, index: int):
    """The sampler of a study's ``index``-th counted trial, seeded by ``(seed, index)``: what
    it draws depends on the seed and the trials before it, not on how many commands ran
    them."""
    import optuna

    seed = int(np.random.SeedSequence([tune.seed, index]).generate_state(1)[0])
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def tune_model(
    study,
    spec: RunSpec,
    datamodule,
    model: str,
    folder: Path,
    wandb: WandbRuns,
    scratch: Path,
    progress: bool = True,
) -> StudyOutcome:
    """Run ``model``'s missing trials, within the budget left; write its best file."""
    from optuna.trial import TrialState

    tune = spec.tune
    for left in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(left.number, state=TrialState.FAIL, skip_if_finished=True)  # tried again
    done = counted_trials(study)
    seconds = sum(t.duration.total_seconds() for t in done)
    new, live = 0, None
    bar = tqdm(
        total=tune.trials,
        initial=min(len(done), tune.trials),
        desc=f"tune {model}",
        unit="trial",
        disable=not progress,
    )
    try:
        while len(done) < tune.trials and not _out_of_time(seconds, tune):
            if live is None:
                live = wandb.study(model, _study_config(spec, datamodule, model, study))
            study.sampler = sampler_for(tune, len(done))
            trial = run_trial(study, spec, datamodule, model, scratch)
            done.append(trial)
            seconds += trial.duration.total_seconds()
            new += 1
            bar.update(1)
            best = _write_best(study, spec, datamodule, model, folder, done, seconds)
            wandb.log_trial(live, trial, best["value"] if best else None)
            tqdm.write(_trial_line(model, trial, best))
    finally:
        bar.close()
    best = _write_best(study, spec, datamodule, model, folder, done, seconds)
    wandb.finish_study(live, best)
    failed = [f"trial {t.number}: {t.user_attrs['error']}" for t in done if "error" in t.user_attrs]
    return StudyOutcome(
        model=model,
        trials=len(done),
        new=new,
        failed=failed,
        seconds=seconds,
        stopped_by="trials" if len(done) >= tune.trials else "timeout",
        best=best,
        best_file=best_path(folder, model) if best else None,
    )


def _out_of_time(seconds: float, tune: TuneSpec) -> bool:
    return tune.timeout_s is not None and seconds >= tune.timeout_s


def run_trial(study, spec: RunSpec, datamodule, model: str, scratch: Path):
    """Ask the study for a trial, fit and score it, and tell the study; the finished trial.
    A model's error fails the trial (it counts); an interrupt fails it and goes on up (it
    does not count: the next command tries it again)."""
    from optuna.trial import TrialState

    trial = study.ask()
    settings = search_space(model).suggest(trial)
    trial.set_user_attr("settings", settings)
    try:
        value = validation_ndcg(spec, datamodule, model, settings, scratch)
    except Exception as error:  # noqa: BLE001 (any model error: recorded, the study goes on)
        lines = str(error).strip().splitlines()
        trial.set_user_attr("error", f"{type(error).__name__}: {lines[0] if lines else ''}"[:500])
        return study.tell(trial, state=TrialState.FAIL)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    return study.tell(trial, value)


def validation_ndcg(spec: RunSpec, datamodule, model: str, settings: dict, scratch: Path) -> float:
    """The objective: ``model`` fitted with ``settings`` over the run's own, scored on the
    validation split's ``relevance`` labels by the suite's NDCG@10 (the spec's gain and
    convention)."""
    seed = spec.tune.seed
    L.seed_everything(seed, verbose=False)
    ranker = create_ranker(model, tuned_spec(spec, model, settings).ranker_settings(model), seed)
    if hasattr(ranker, "progress"):
        ranker.progress = False  # one bar: the trials'
    if hasattr(ranker, "scratch_dir"):
        ranker.scratch_dir = str(scratch)
    ranker.trainer_config = spec.trainer
    ranker.dask_client = datamodule.dask_client  # read by the rankers that train on Dask
    ranker.fit(datamodule)
    val = datamodule.arrays("val")
    scores = np.asarray(ranker.predict(datamodule, "val"), dtype=np.float64)
    result = ndcg(
        val.labels["relevance"],
        scores,
        val.group,
        k=10,
        gain=spec.metrics.gain,
        convention=spec.metrics.scoring(),
    )
    if not np.isfinite(result.mean):
        raise ValueError("no validation query has a positive relevance label to score")
    return result.mean


# ---------------------------------------------------------------------- results


def _write_best(
    study, spec: RunSpec, datamodule, model: str, folder: Path, done: list, seconds: float
) -> dict | None:
    """The best finished trial (the first of equal ones) as ``<model>.best.yaml``."""
    finished = [t for t in done if "error" not in t.user_attrs]
    if not finished:
        return None
    best = max(finished, key=lambda t: t.value)
    content = {
        "model": model,
        "settings": best.user_attrs["settings"],
        "value": float(best.value),
        "objective": OBJECTIVE,
        "trial": best.number,
        "trials_done": len(done),
        "trials_failed": len(done) - len(finished),
        "wall_time_s": round(seconds, 2),
        "stopped_by": "trials" if len(done) >= spec.tune.trials else "timeout",
        "budget": budget_of(spec.tune),
        "study": study_path(folder, model).name,
        "tuned_on": {
            "benchmark": spec.name,
            "dataset_fingerprint": datamodule.fingerprint,
            "split_hash": datamodule.split_hash,
        },
    }
    write_best(folder, model, content)
    return content


def _study_config(spec: RunSpec, datamodule, model: str, study) -> dict:
    """What a study's W&B run shows: the model, the budget, the run's settings the trials
    start from, the study's identity and the space's source."""
    return {
        "model": model,
        "tune": as_mapping(spec.tune),
        **run_settings(spec, datamodule, model),
        "identity": dict(study.user_attrs),
        "search_space": search_space(model).SOURCE,
    }


def _trial_line(model: str, trial, best: dict | None) -> str:
    took = f"{trial.duration.total_seconds():.1f}s"
    if "error" in trial.user_attrs:
        return f"trial {trial.number} of {model} failed after {took}: {trial.user_attrs['error']}"
    shown = f", best {best['value']:.4f} (trial {best['trial']})" if best else ""
    return f"trial {trial.number} of {model}: validation NDCG@10 {trial.value:.4f} in {took}{shown}"


def tuning_table(outcomes: list[StudyOutcome], tune: TuneSpec) -> str:
    cap = f"{tune.timeout_s:g} s" if tune.timeout_s is not None else "none"
    lines = [
        f"Budget per model: {tune.trials} trials, time cap {cap}, {tune.sampler} sampler, "
        f"seed {tune.seed}; objective: {OBJECTIVE}.",
        "",
        "| model | trials | new | failed | best val NDCG@10 | best trial | trial time s | "
        "stopped by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        value = f"{o.best['value']:.4f}" if o.best else "–"
        trial = str(o.best["trial"]) if o.best else "–"
        lines.append(
            f"| {o.model} | {o.trials} | {o.new} | {len(o.failed)} | {value} | {trial} | "
            f"{o.seconds:.1f} | {o.stopped_by} |"
        )
    return "\n".join(lines)
