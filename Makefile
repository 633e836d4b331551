# rankbench: the two commands a newcomer needs are `make bench` and `make test`.
# Both create the environment first when .venv is missing.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# torch is pinned exactly and installed first: 2.13.0 resolves to the local CPU build,
# anything looser pulls a multi-GB CUDA build.
TORCH   := torch==2.13.0
# The reference environment: the exact version of every package, made by `make lock`
# (pip-compile over pyproject.toml's ranges). Records store its hash.
LOCK    := requirements.lock

PRESET  ?= default
MODELS  ?= xgboost tabnet ft_transformer dcn_v2 mmoe mtl_tinybert
SEEDS   ?= 0 1 2
BENCH_ARGS ?=
ABLATE_ARGS ?=
STUDY_ARGS ?=
# `make tune`: tune on the ci preset with the budget 2 cores allow (20 trials, at most 600 s of
# trials per model), then benchmark PRESET's defaults and tuned settings side by side.
TUNE_PRESET ?= ci
TUNE_ARGS ?= --trials 20 --timeout 600
TUNED_DIR ?= results/simulator-$(TUNE_PRESET)-tuning

export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1

.PHONY: install lock bench bench-gpu bench-large ablate tune study study-letor test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Regenerate the lock from pyproject.toml's ranges (then `make install` syncs the venv to it).
lock:
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --extra dev \
		--strip-extras --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml

# One thread per run, as many runs at a time as cores (README "Several runs at a time"): the
# records are the same on any core count; BENCH_ARGS="--threads 2 --jobs 1" overrides it.
bench: $(STAMP)
	$(VENV)/bin/rankbench bench --dataset simulator --preset $(PRESET) \
		--models $(MODELS) --seeds $(SEEDS) --threads 1 --jobs auto $(BENCH_ARGS)

# On one CUDA GPU: FT-Transformer at the paper's size and MTL-TinyBERT's gpu profile on the
# default preset, one seed (benchmarks/configs/gpu.yaml), then every model on the tiny preset.
bench-gpu: $(STAMP)
	$(VENV)/bin/rankbench bench --config benchmarks/configs/gpu.yaml $(BENCH_ARGS)
	$(VENV)/bin/rankbench bench --dataset simulator --preset tiny --models $(MODELS) --seeds 0 \
		--accelerator gpu --devices 1 --name simulator-tiny-gpu $(BENCH_ARGS)

# The large preset (20M impressions) read a part at a time: XGBoost and MMoE, one seed
# (benchmarks/configs/large.yaml).
bench-large: $(STAMP)
	$(VENV)/bin/rankbench bench --config benchmarks/configs/large.yaml $(BENCH_ARGS)

ablate: $(STAMP)
	$(VENV)/bin/rankbench ablate --dataset simulator --preset $(PRESET) --seeds $(SEEDS) \
		--threads 1 --jobs auto $(ABLATE_ARGS)

# Tune every model with the same budget (one thread, as the benchmark's runs), then benchmark
# the defaults and the tuned settings.
tune: $(STAMP)
	$(VENV)/bin/rankbench tune --dataset simulator --preset $(TUNE_PRESET) --models $(MODELS) \
		--threads 1 $(TUNE_ARGS)
	$(VENV)/bin/rankbench bench --dataset simulator --preset $(PRESET) \
		--models $(MODELS) --seeds $(SEEDS) --threads 1 --jobs auto --tuned $(TUNED_DIR) $(BENCH_ARGS)

# The debiasing study (benchmarks/configs/debiasing.yaml): signals x click models. One thread:
# its small fits use one core anyway, and its committed records are reused at that count.
study: $(STAMP)
	$(VENV)/bin/rankbench study --dataset simulator --preset $(PRESET) --seeds $(SEEDS) \
		--threads 1 $(STUDY_ARGS)

# The same question on semi-synthetic clicks over a LETOR-format dataset written from the
# simulator (build/ is git-ignored; the files are made again, identically, on any machine).
study-letor: $(STAMP)
	$(VENV)/bin/rankbench simulate --preset ci --format letor --out build/simulated-letor
	$(VENV)/bin/rankbench study --dataset letor --data build/simulated-letor \
		--study-file benchmarks/configs/debiasing-letor.yaml --seeds $(SEEDS) --threads 1 $(STUDY_ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .rankbench_cache
