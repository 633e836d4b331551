"""Ablation study of one model: which of its parts, and of its labels, carry its quality.

An ablation file (``benchmarks/configs/ablate.yaml`` by default) names the model and an
ordered mapping of variants. The first variant, ``full``, is the reference: the model with
the bench settings. Every other variant changes some of the model's settings
(``model_config``, replacing the bench config's settings of the same name) and/or data
settings (``data``, merged over the bench config's ``data`` section), and says what it
changes in a ``description``. Everything else (dataset, preset, seeds, metrics, output, W&B)
comes from the ordinary bench config.

Each variant is a one-model benchmark whose run records go to
``<output>/<name>-ablation/<variant>/``; a run whose record matches is skipped, as in
``rankbench bench``, so an interrupted ablation resumes. Variants with the same data settings
share one prepared ``SearchLogDataModule`` (labelling and featurising are the costly part),
and every variant must have the reference's test split, so that the table compares variants
query by query: one row per variant, mean ± std over seeds, the difference from ``full`` on
the headline NDCG, and a paired Wilcoxon test of every variant against ``full``.

A variant that changes how the ``relevance`` labels are made (behavioural targets, labels
without debiasing or similarity) is scored against other test labels than ``full``'s on the
``rel`` columns; those cells are shown, marked ``†``, and neither tested nor ranked. The
true-relevance and behaviour (MRR) columns use the same test labels for every variant.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.ablation_plan import (  # noqa: F401 (the ablation's public names, in one place)
    PACKAGED_VARIANTS,
    REFERENCE,
    AblationPlan,
    Variant,
    ablation_name,
    group_by_data,
    load_ablation,
    select_variants,
    variant_spec,
)
from benchmarks.ablation_report import AblationOutcome, PreparedData, report
from benchmarks.records import RunStore
from benchmarks.runner import prepare_datamodule, run_models
from benchmarks.spec import RunSpec
from benchmarks.wandb_logging import WandbRuns
from datamodules import SearchLogDataModule
from models import get_ranker
from models.devices import is_first_process

# ---------------------------------------------------------------------- running


def run_ablation(
    spec: RunSpec,
    command: str,
    variants_file: str | Path | None = None,
    model: str | None = None,
    variants: list[str] | None = None,
    progress: bool = True,
    echo=print,
    rerun: bool = False,
) -> AblationOutcome:
    """Train and evaluate every variant x seed of an ablation, then write its table.

    ``model`` replaces the file's model, ``variants`` selects some of the file's variants
    (``full`` is always run), ``rerun`` retrains even where a matching record exists.
    """
    plan = load_ablation(variants_file)
    model = model or plan.model
    get_ranker(model)  # fail fast on a misspelt model name, before any data work
    selected = select_variants(plan.variants, variants)
    specs = {v.name: variant_spec(spec, model, v) for v in selected}
    folder = Path(spec.output) / ablation_name(spec)
    # Under several devices every process walks the same runs; the first one writes.
    first = is_first_process()
    progress, echo = (progress, echo) if first else (False, lambda *_: None)
    mode = spec.wandb.mode if first else "disabled"
    wandb = WandbRuns(mode, spec.wandb.project, ablation_name(spec), folder)

    prepared: dict[str, PreparedData] = {}
    ran, skipped = [], []
    for names in group_by_data(specs):
        echo(f"data for variant(s) {', '.join(names)}")
        datamodule = prepare_datamodule(specs[names[0]], progress, echo)
        data = describe_data(datamodule)
        check_same_split(data, prepared.get(REFERENCE), names)
        for name in names:
            prepared[name] = data
            echo(f"variant {name}")
            store = RunStore(folder / name, writer=first)
            done, kept = run_models(
                datamodule, specs[name], store, wandb, progress, rerun, variant=name
            )
            failed = store.failures()
            if failed:
                raise ValueError(
                    f"variant {name}: "
                    + "; ".join(
                        f"{f['run_id']} failed at {f['stage']}: {f['error']}" for f in failed
                    )
                    + " (the finished runs are kept)"
                )
            ran += [f"{name}/{run}" for run in done]
            skipped += [f"{name}/{run}" for run in kept]
        del datamodule  # free it before the next group's is built

    if not first:
        return AblationOutcome(folder, pl.DataFrame(), "", ran, skipped, writer=False)
    outcome = report(spec, model, selected, specs, prepared, folder, command, ran, skipped)
    files = [folder / name for name in ("summary.md", "summary.csv", "ndcg.png", "ablation.json")]
    wandb.log_summary(
        outcome.table,
        {"ablation": ablation_name(spec), "model": model, "command": command},
        files + [folder / v for v in outcome.table["variant"].to_list()],
    )
    return outcome


def describe_data(datamodule: SearchLogDataModule) -> PreparedData:
    """What the report needs from a prepared data module. Its relevance digest tells whether
    two variants score the ``rel`` columns against the same test labels."""
    test = datamodule.arrays("test")
    digest = hashlib.sha256(test.request_id.tobytes())
    if "relevance" in test.labels:
        digest.update(np.ascontiguousarray(test.labels["relevance"]).tobytes())
    return PreparedData(
        dataset=datamodule.source.describe(),
        split_hash=datamodule.split_hash,
        fingerprint=datamodule.fingerprint,
        relevance_digest=digest.hexdigest()[:16],
        test_requests=test.n_groups,
        labels=tuple(test.labels),
    )


def check_same_split(data: PreparedData, reference: PreparedData | None, names: list[str]) -> None:
    """Variants are compared query by query: every one must have the reference's test split."""
    if reference is not None and data.split_hash != reference.split_hash:
        raise ValueError(
            f"variant(s) {', '.join(names)}: split {data.split_hash} differs from "
            f"{REFERENCE!r}'s {reference.split_hash}; variants must share the test split, so "
            f"leave data.split out of them"
        )
