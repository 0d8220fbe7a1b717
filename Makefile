# asc: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1
export UV  # tests build and install the wheel with it (tests/test_wheel.py)
# Install with the bytecode compiled: where PYTHONDONTWRITEBYTECODE is set (as on the project's VMs) Python would
# otherwise compile torch, Lightning, SciPy and SymPy from source in every process: `import pytorch_lightning` took
# 23 s instead of 10 s, and the test suite starts a few hundred such processes (experiments/bench/README.md).
export UV_COMPILE_BYTECODE := 1

.PHONY: help install demo test test-fast tune ui server clean grid report reliability

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.venv/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-extras
	@touch $@

install: .venv/.synced ## create .venv and install the locked dependencies (uv)

demo: install ## the paper's pipeline on synthetic scenes, logged to MLflow (about 80 s on 2 cores)
	$(PY) train.py experiment=demo

# The suite runs in TEST_WORKERS processes (pytest-xdist), default 2: on 2 cores the end-to-end tests spend much of their
# time in single-threaded work (Python start-up and imports, waits on SLURM, PostgreSQL, Chromium), and each worker's
# torch gets its share of the cores (tests/conftest.py). `--dist loadfile` keeps each test file in one worker, so its
# module fixtures (a SLURM cluster, a server, a trained run) are made once (`--dist loadgroup` would be finer, but with
# pytest 9.2 it silently ignores `xdist_group`: pytest-xdist#1386). TEST_WORKERS=1: one process, as before.
TEST_WORKERS ?= 2

test: install ## the whole test suite (what CI runs; 2 processes, TEST_WORKERS=N for N; the 25 slowest tests listed at the end)
	$(PY) -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) --durations=25

test-fast: install ## the tests under 2 s each (about 1.5 min on 2 cores; the `slow` ones are left out)
	$(PY) -m pytest -m "not slow"

reliability: install ## faults injected at random (kills, full disk, server gone, damaged bytes, ...), then the table (~30 min; not in `make test`)
	PYTHONPATH=tests $(PY) -m reliability $(ARGS)

grid: install ## the paper's 27-run grid (experiment=paper_grid); rerun to resume. ARGS="hydra/launcher=joblib ..."
	$(PY) train.py -m experiment=paper_grid $(ARGS)

report: install ## a sweep next to the paper's table: make report [SWEEP=multirun/<date>/<time>] [RUN=<parent run id> URI=<store>]
	.venv/bin/asc report $(if $(RUN),--parent-run $(RUN),$(SWEEP)) $(if $(URI),--tracking-uri $(URI))

tune: install ## an Optuna study over the augmentation and head (resumable; ARGS="experiment=demo_small_cnn tune.n_trials=20 ...")
	.venv/bin/asc tune $(ARGS)

ui: install ## serve the MLflow UI of mlflow.db on http://127.0.0.1:5000 (prints each experiment's training-runs link)
	.venv/bin/asc server --db sqlite:///mlflow.db --host 127.0.0.1 --port 5000

server: install ## the team's MLflow server, artifacts proxied: make server [DB=postgresql://user:pw@host/mlflow] [HOST=0.0.0.0] [PORT=5000]
	.venv/bin/asc server $(if $(DB),--db '$(DB)') --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),5000) $(ARGS)

clean: ## remove generated data, caches and runs (keeps .venv)
	rm -rf data/synthetic-scenes-* cache outputs multirun

# -- the TAU dataset (see README, "The TAU dataset") --
DATA ?= data
TAU := $(DATA)/TAU-urban-acoustic-scenes-2019-development
.PHONY: data features

data: install ## fetch TAU 2019 development from Zenodo into data/ (DATA=dir; md5-checked, resumable), verify it
	.venv/bin/asc download $(DATA)
	.venv/bin/asc verify $(TAU)

features: install ## the paper's CQT image of every TAU clip into cache/ (all cores, resumable)
	.venv/bin/asc extract $(TAU) --cache cache
bench-predict: install ## prediction latency per 10 s of audio and the stream's real-time factor (small CNN, VGG16)
	$(PY) benchmarks/prediction.py --threads 1

# -- speed (see experiments/bench/README.md) --
.PHONY: bench bench-accuracy bench-gpu bench-grid bench-gpu-grid

bench: install ## speed benchmarks, side-by-side ratios measured in one run (1-3 min on 2 cores)
	$(PY) -m benchmarks

bench-accuracy: install ## accuracy of the fast paths (cache positions, bf16) on synthetic scenes, 3 seeds
	$(PY) -m benchmarks.accuracy

bench-gpu: install ## the GPU benchmarks in one run (on a machine with a GPU), results to experiments/bench/gpu.json
	$(PY) -m benchmarks.gpu --json experiments/bench/gpu.json

bench-grid: install ## the paper's grid end to end (extract, 27 jobs, report), scaled down for a CPU; ARGS="--size full" on a GPU node
	$(PY) -m benchmarks.grid_e2e --size cpu $(ARGS)

bench-gpu-grid: install ## issue 14 on a GPU node in one run (~7 min): CQT on the GPU vs librosa, the grid end to end
	$(PY) -m benchmarks.gpu_issue14 $(ARGS)
