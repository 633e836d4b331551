"""The ``rankbench`` command."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        # Before polars, torch or XGBoost start their thread pools.
        from datamodules.threads import resolve_threads, set_thread_env

        set_thread_env(resolve_threads(_early_threads(args)))
        from datamodules.tables import LogValidationError
    except ValueError as error:
        print(f"rankbench: error: {error}", file=sys.stderr)
        return 2
    try:
        return args.handler(args, argv)
    except (LogValidationError, ValueError, FileNotFoundError) as error:
        print(f"rankbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        finished = "trials" if args.command == "tune" else "runs"
        print(
            f"rankbench: interrupted; finished {finished} are kept and will be skipped next time",
            file=sys.stderr,
        )
        return 130
    except Exception as error:
        cluster = sys.modules.get("datamodules.cluster")
        if cluster is None or not isinstance(error, cluster.ClusterError):
            raise
        print(f"rankbench: error: {error}", file=sys.stderr)  # a lost worker, the stage named
        return 1
    finally:
        if "datamodules.cluster" in sys.modules:  # a Dask cluster was used: close it
            sys.modules["datamodules.cluster"].close_all()


def _early_threads(args):
    """The ``threads`` setting in the settings' own order (``--set``, then ``--threads``, then
    the config file), read early: polars sizes its pool at import. Checked again with every
    other setting once the settings are loaded."""
    for assignment in reversed(getattr(args, "set", None) or []):
        key, _, value = assignment.partition("=")
        if key.strip() == "threads":
            import yaml

            return yaml.safe_load(value)
    if getattr(args, "threads", None) is not None:
        return args.threads
    path = getattr(args, "config", None)
    if path is not None and Path(path).is_file():
        import yaml

        try:
            content = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError:
            return None  # reported with its file name when the settings are loaded
        if isinstance(content, dict):
            return content.get("threads")
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rankbench",
        description="Benchmark suite for personalized product-search ranking.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    simulate = commands.add_parser(
        "simulate",
        help="write a simulated search log (with its truth) to a folder",
        description="Generate the simulator's search log at a preset and write the canonical "
        "tables (products, users, impressions, truth) as Parquet, chunk by chunk.",
    )
    simulate.add_argument("--preset", help="tiny | ci | default | large (default: default)")
    simulate.add_argument("--out", required=True, type=Path, help="folder to write into")
    simulate.add_argument("--seed", type=int, default=None, help="simulator seed")
    simulate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a simulator setting, e.g. position_bias=1.5",
    )
    simulate.add_argument(
        "--format",
        choices=["tables", "letor"],
        default="tables",
        help="tables: the canonical tables (default); letor: a LETOR-format judged dataset "
        "(train/vali/test.txt) of the log's queries, consensus judgments and retrieval features",
    )
    simulate.set_defaults(handler=_simulate)

    label = commands.add_parser(
        "label",
        help="derive relevance labels for a log and write a label report",
        description="Estimate position bias, debias and smooth click / cart / purchase rates, "
        "combine them with query-product similarity into grades 0-4, and write labels.parquet, "
        "the propensity curve (CSV and plot) and report.md. Label settings are the "
        "data.labels section of the bench config.",
    )
    _add_common_options(label, "override a setting, e.g. data.labels.labeling.debias=false")
    label.add_argument(
        "--out", type=Path, help="output folder (default: results/labels/<dataset>-<preset>)"
    )
    label.set_defaults(handler=_label)

    bench = commands.add_parser(
        "bench",
        help="train and evaluate models on one dataset, write tables to results/",
        description="Train every model with every seed on identical splits, evaluate on the "
        "test split, write run records, summary tables and plots to <output>/<name>/, and log "
        "to W&B (offline by default). Finished runs are skipped when rerun.",
    )
    _add_common_options(
        bench, "override any setting, e.g. data.split.seed=1 or model_config.xgboost.max_depth=8"
    )
    bench.add_argument("--models", nargs="+", help="registered model names, e.g. xgboost")
    _add_run_options(bench, "benchmark name (default: <dataset>-<preset>)")
    bench.add_argument(
        "--tuned",
        type=Path,
        metavar="DIR",
        help="a `rankbench tune` folder: also run each model with its tuned settings, as a "
        "row '<model> (tuned)' beside its own",
    )
    _add_trainer_options(bench)
    bench.set_defaults(handler=_bench)

    tune = commands.add_parser(
        "tune",
        help="tune every model's settings with the same Optuna budget",
        description="For each model, an Optuna study (seeded TPE or random sampler) of the "
        "same number of trials and the same time cap: each trial fits the model with "
        "settings drawn from its search space (benchmarks/search_spaces/) and scores the "
        "validation split's NDCG@10 of the relevance label; the test split is never scored. "
        "Studies (SQLite) and each model's best settings go to <out>/<name>-tuning/; an "
        "interrupted study resumes, and `rankbench bench --tuned <that folder>` benchmarks "
        "the tuned settings beside the defaults.",
    )
    _add_common_options(
        tune, "override any setting, e.g. tune.seed=1 or model_config.xgboost.n_estimators=500"
    )
    tune.add_argument("--models", nargs="+", help="registered model names, e.g. xgboost")
    tune.add_argument("--trials", type=int, help="trials per model (default: 20)")
    tune.add_argument(
        "--timeout",
        dest="timeout_s",
        type=float,
        metavar="SECONDS",
        help="no trial starts once a model's trials took this long (default: 3600)",
    )
    tune.add_argument("--sampler", help="tpe | random (default: tpe)")
    _add_output_options(tune, "results go to <out>/<name>-tuning (default: <dataset>-<preset>)")
    _add_trainer_options(tune)
    tune.set_defaults(handler=_tune)

    ablate = commands.add_parser(
        "ablate",
        help="train one model's ablation variants, write a table against the full model",
        description="Train and evaluate each variant of one model (an ablation file: the "
        "reference 'full' first, then variants overriding model or data settings) with every "
        "seed on the same test split, write run records per variant and a table comparing "
        "every variant with 'full' to <output>/<name>-ablation/, and log to W&B (offline by "
        "default). Finished runs are skipped when rerun.",
    )
    _add_common_options(
        ablate, "override any bench setting, e.g. model_config.mtl_tinybert.max_epochs=5"
    )
    _add_run_options(ablate, "results go to <out>/<name>-ablation (default: <dataset>-<preset>)")
    _add_trainer_options(ablate)
    ablate.add_argument(
        "--variants-file",
        type=Path,
        help="YAML file naming the model and its variants (default: the packaged "
        "benchmarks/configs/ablate.yaml)",
    )
    ablate.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="run these variants only ('full', the reference, is always run)",
    )
    ablate.add_argument("--model", help="ablate this registered model instead of the file's")
    ablate.set_defaults(handler=_ablate)

    study = commands.add_parser(
        "study",
        help="run a study: rows (models and signals) under columns (conditions of the data)",
        description="Train and evaluate every row x column x seed of a study file (the packaged "
        "debiasing study by default: raw clicks, derived labels and debiased losses under the "
        "pbm, cascade and dbn click models), each cell a small benchmark on the same test "
        "split per column, and write one table of the headline metric to "
        "<output>/<name>-<study>/. Finished runs are skipped when rerun.",
    )
    _add_common_options(study, "override any bench setting, e.g. model_config.mmoe.max_epochs=5")
    _add_run_options(study, "results go to <out>/<name>-<study> (default: <dataset>-<preset>)")
    study.add_argument(
        "--study-file",
        type=Path,
        help="YAML file of rows and columns (default: benchmarks/configs/debiasing.yaml)",
    )
    study.add_argument("--rows", nargs="+", metavar="NAME", help="run these rows only")
    study.add_argument("--columns", nargs="+", metavar="NAME", help="run these columns only")
    _add_trainer_options(study)
    study.set_defaults(handler=_study)
    return parser


def _add_run_options(parser: argparse.ArgumentParser, name_help: str) -> None:
    """Seeds, naming, output, W&B, plugins and reruns: the same for bench and ablate."""
    parser.add_argument("--seeds", nargs="+", type=int, help="model seeds, e.g. 0 1 2")
    parser.add_argument(
        "--jobs",
        type=lambda value: value if value == "auto" else int(value),
        help="runs at a time, each in its own process with --threads threads; auto: cores // "
        "threads (default: 1)",
    )
    _add_output_options(parser, name_help)
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="retrain every run, even those whose record matches this code, data and config",
    )


def _add_output_options(parser: argparse.ArgumentParser, name_help: str) -> None:
    """Naming, output, W&B and plugins: the same for bench, ablate and tune."""
    parser.add_argument("--name", help=name_help)
    parser.add_argument("--out", dest="output", help="results folder (default: results)")
    parser.add_argument(
        "--wandb", choices=["offline", "online", "disabled"], help="W&B mode (default: offline)"
    )
    parser.add_argument(
        "--import",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module or .py file that registers extra models",
    )


def _add_trainer_options(parser: argparse.ArgumentParser) -> None:
    """Where neural models train (the ``trainer`` section; Lightning's names)."""
    group = parser.add_argument_group("devices (neural models)")
    group.add_argument("--accelerator", help="auto | cpu | gpu | mps (default: auto)")
    group.add_argument("--devices", help="how many devices, or which ('0,1'); default: auto")
    group.add_argument("--strategy", help="auto | ddp | fsdp | ... (default: auto)")
    group.add_argument(
        "--precision",
        help="32-true | bf16-mixed | 16-mixed (default: bf16-mixed on a GPU "
        "with bfloat16, else 32-true)",
    )
    group.add_argument("--num-nodes", type=int, help="machines (default: 1)")


def _add_common_options(parser: argparse.ArgumentParser, set_help: str) -> None:
    """Where the data comes from and how settings are given: the same for every command."""
    parser.add_argument(
        "--config", type=Path, help="a YAML file of settings (copy benchmarks/configs/bench.yaml)"
    )
    parser.add_argument(
        "--dataset",
        help="simulator | logdir | files | retrotech | letor | esci | wands (default: simulator); "
        "esci and wands take dataset_options, e.g. --set dataset_options.locale=jp",
    )
    parser.add_argument("--preset", help="simulator preset: tiny | ci | default | large")
    parser.add_argument(
        "--data",
        dest="data_path",
        help="the log's folder (logdir, retrotech, letor, esci, wands) or mapping file (files)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for torch, BLAS, polars and XGBoost (default: the cores this process "
        "may use)",
    )
    parser.add_argument(
        "--dask",
        metavar="local|tcp://HOST:PORT",
        help="count the labels' and behaviour features' statistics and train XGBoost on a Dask "
        "cluster: local (one worker per core) or a running scheduler's address",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _simulate(args, argv) -> int:
    from benchmarks.config import parse_assignment
    from datamodules.simulator import DEFAULT_PRESET, preset, write_log

    overrides = {}
    for assignment in args.set:  # `simulator.position_bias=2` as bench takes it, or without
        overrides.update(parse_assignment(assignment.removeprefix("simulator.")))
    if args.seed is not None:
        overrides["seed"] = args.seed
    config = preset(args.preset or DEFAULT_PRESET, **overrides)
    if args.format == "letor":
        from datamodules.simulator import simulate
        from datamodules.simulator.letor_export import write_letor

        summary = write_letor(simulate(config, progress=True), args.out, seed=config.seed)
    else:
        summary = write_log(config, args.out, progress=True)
    print(f"wrote {args.out}: {summary}")
    return 0


def _label(args, argv) -> int:
    from benchmarks.config import load_spec
    from benchmarks.label_report import derive_labels_for, write_label_report
    from datamodules.threads import apply_threads, resolve_threads

    overrides = {
        "dataset": args.dataset,
        "preset": args.preset,
        "data_path": args.data_path,
        "threads": args.threads,
        "dask": args.dask,
    }
    spec = load_spec(args.config, overrides, args.set)
    if spec.dask is not None:  # connected now, before any data work: or refused in one line
        from datamodules.cluster import connect

        connect(spec.dask)
    apply_threads(resolve_threads(spec.threads))
    out = args.out or Path(spec.output) / "labels" / spec.name
    run = derive_labels_for(spec, progress=not args.quiet)
    print(write_label_report(run, out, shlex.join(["rankbench", *argv])))
    print(f"labels: {out}/labels.parquet; report: {out}/report.md")
    return 0


def _bench(args, argv) -> int:
    from benchmarks.runner import run_benchmark
    from benchmarks.tuning_store import load_tuned

    spec = _run_spec(args, models=args.models)
    tuned = load_tuned(args.tuned, spec) if args.tuned is not None else None
    command = shlex.join(["rankbench", *argv])
    outcome = run_benchmark(spec, command, progress=not args.quiet, rerun=args.rerun, tuned=tuned)
    if not _print_outcome(spec, outcome, "runs/"):
        return 0
    if outcome.failed:
        print(
            f"rankbench: {len(outcome.failed)} run(s) failed: {'; '.join(outcome.failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _ablate(args, argv) -> int:
    from benchmarks.ablation import run_ablation

    spec = _run_spec(args)
    command = shlex.join(["rankbench", *argv])
    outcome = run_ablation(
        spec,
        command,
        variants_file=args.variants_file,
        model=args.model,
        variants=args.variants,
        progress=not args.quiet,
        rerun=args.rerun,
    )
    _print_outcome(spec, outcome, "ablation.json, one folder of run records per variant")
    return 0


def _tune(args, argv) -> int:
    from benchmarks.tune import run_tuning

    budget = {"trials": args.trials, "timeout_s": args.timeout_s, "sampler": args.sampler}
    spec = _run_spec(
        args, models=args.models, tune={k: v for k, v in budget.items() if v is not None}
    )
    outcome = run_tuning(spec, progress=not args.quiet)
    print()
    print(outcome.markdown)
    print(
        f"\nstudies and best settings: {outcome.folder}/<model>.sqlite3, <model>.best.yaml; "
        f"benchmark them beside the defaults with `rankbench bench ... --tuned {outcome.folder}`"
    )
    _print_wandb_folder(spec, outcome.folder)
    failed = [f"{o.model} {f}" for o in outcome.studies for f in o.failed]
    unfinished = [o.model for o in outcome.studies if o.best is None]
    if failed or unfinished:
        without = f"no finished trial for {', '.join(unfinished)}; " if unfinished else ""
        print(
            f"rankbench: {without}{len(failed)} trial(s) failed: {'; '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _study(args, argv) -> int:
    from benchmarks.study import run_study

    spec = _run_spec(args)
    command = shlex.join(["rankbench", *argv])
    outcome = run_study(
        spec,
        command,
        study_file=args.study_file,
        rows=args.rows,
        columns=args.columns,
        progress=not args.quiet,
        rerun=args.rerun,
    )
    _print_outcome(spec, outcome, "study.json, one folder of run records per column and row")
    return 0


def _print_outcome(spec, outcome, files: str) -> bool:
    """The table and where the results went; False (nothing printed) in the other processes
    of a multi-device run, where the first one reports."""
    if not outcome.writer:
        return False
    print()
    print(outcome.markdown)
    print(f"\nresults: {outcome.folder}/summary.md (and .csv, ndcg.png, {files})")
    _print_wandb_folder(spec, outcome.folder)
    return True


def _run_spec(args, models: list[str] | None = None, tune: dict | None = None):
    """The run specification of a bench, ablate or tune command line (plugins imported
    first)."""
    from benchmarks.config import load_spec
    from benchmarks.runner import import_plugins

    import_plugins(args.plugins)
    overrides = {
        "dataset": args.dataset,
        "preset": args.preset,
        "data_path": args.data_path,
        "models": models,
        "seeds": getattr(args, "seeds", None),  # tune has none: its trials' seed is tune.seed
        "name": args.name,
        "output": args.output,
        "threads": args.threads,
        "jobs": getattr(args, "jobs", None),
        "dask": args.dask,
        "wandb": {"mode": args.wandb} if args.wandb else None,
        "tune": tune or None,
    }
    trainer = {
        key: value
        for key in ("accelerator", "devices", "strategy", "precision", "num_nodes")
        if (value := getattr(args, key)) is not None
    }
    overrides["trainer"] = trainer or None
    spec = load_spec(args.config, overrides, args.set)
    if spec.dask is not None:  # connected now, before any data work: or refused in one line
        from datamodules.cluster import connect

        connect(spec.dask)
    return spec


def _print_wandb_folder(spec, folder: Path) -> None:
    if spec.wandb.mode == "offline":
        print(
            f"W&B offline runs: {folder}/wandb  (upload: wandb sync {folder}/wandb/offline-run-*)"
        )


if __name__ == "__main__":
    sys.exit(main())
