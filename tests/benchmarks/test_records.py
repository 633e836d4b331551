"""What a run record depends on: the code hash covers the ranker's code and what it imports."""

from __future__ import annotations

import inspect
from pathlib import Path

from benchmarks.records import ROOT, code_hash, source_closure
from models import get_ranker


def closure_of(model: str) -> set[str]:
    source = Path(inspect.getsourcefile(get_ranker(model)))
    return {str(p.relative_to(ROOT)) for p in source_closure([source])}


def test_the_closure_follows_imports_within_rankbench_only():
    files = closure_of("mtl_tinybert")
    assert {
        "models/mtl_tinybert.py",
        "models/text_tower.py",
        "models/blocks.py",
        "models/neural.py",
        "models/base.py",
        "datamodules/batches.py",
        "datamodules/text_encoding.py",
    } <= files
    # Nothing the model does not import: other models, loaders, the driver.
    assert not files & {
        "models/xgboost_ranker.py",
        "models/mmoe.py",
        "datamodules/loaders.py",
        "benchmarks/runner.py",
    }


def test_code_hash_includes_the_scoring_code_and_differs_by_model():
    assert code_hash(get_ranker("xgboost")) != code_hash(get_ranker("mmoe"))
    assert code_hash(get_ranker("xgboost")) == code_hash(get_ranker("xgboost"))
    assert code_hash(None) != code_hash(get_ranker("xgboost"))


def test_a_plugin_outside_rankbench_is_hashed_with_what_it_imports(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("from models.base import Ranker\n")
    closure = {str(p) for p in source_closure([plugin])}
    assert str(plugin.resolve()) in closure
    assert str(ROOT / "models" / "base.py") in closure
