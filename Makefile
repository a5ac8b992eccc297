# Two set-up commands (README): `make repro` runs the pipeline, `make test` runs the tests.
# Both create the virtual environment on first use.
VENV := .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export NLTK_DATA := $(CURDIR)/.nltk_data

.PHONY: repro test tables lint env nltk browser demo clean-env gpu-check

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock pipeline/venv_path.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock -e ".[dev]"
	$(BIN)/python -m pipeline.venv_path
	touch $@

# Fails, saying what to run, when WordNet can be had neither from NLTK nor from apt-get.
nltk: $(VENV)/.installed
	$(BIN)/python -m pipeline.mining.nltk_setup --dir $(NLTK_DATA)

repro: env nltk
	$(BIN)/dvc repro

# Debian's Chromium, for the demo's browser test (tests/test_demo_browser.py), where this
# machine lets us install it (root and apt-get); elsewhere that one test is skipped, saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null 2>&1 && export DEBIAN_FRONTEND=noninteractive \
		&& { apt-get install -y -q chromium || { apt-get update -q \
		     && apt-get install -y -q chromium; }; } >/dev/null 2>&1; } \
		|| echo "no Chromium: tests/test_demo_browser.py will be skipped (install Debian's chromium)"

test: env nltk browser
	$(BIN)/python -m pytest -q

# The demo page on http://127.0.0.1:7860 with the pipeline's models (after `make repro`).
demo: env
	$(BIN)/ovseg demo

# The paper's ablation tables on the miniature: every `dvc exp run` of
# pipeline/report/ablations.py on 5 world seeds (resumes where it stopped), then the
# committed report reports/paper_tables.{md,png}.
tables: env nltk
	$(BIN)/python -m reports.paper_tables run
	$(BIN)/python -m reports.paper_tables render

# Does the GPU path work here, and how fast (benchmarks/gpu_check.py): the default graph on
# CUDA, the tests marked gpu and the heavy-stage benchmark, one report in gpu-check/. Runs
# with the project's .venv when there is one, else with GPU_PYTHON (any interpreter that has
# the packages: a GPU machine without internet); it names what is missing.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

lint: env
	$(BIN)/ruff check pipeline stages tests

clean-env:
	rm -rf $(VENV)
