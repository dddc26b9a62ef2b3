# lzn-lightning developer commands. `make install` once, then `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install test test-all test-ddp lint bench bench-quality clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python  ## create .venv and install lzn-lightning with dev extras (editable)
	$(BIN)/pip install -e ".[dev]"

test:  ## fast suite: unit, integration, recipe smoke runs, DDP (CPU only, no network)
	$(BIN)/pytest -m "not slow and not gpu" -q

test-all:  ## everything that runs on CPU, including slow real-data tests
	$(BIN)/pytest -m "not gpu" -q

test-ddp:
	$(BIN)/pytest -m ddp -q

lint:
	$(BIN)/ruff check src modalities tests benchmarks
	$(BIN)/ruff format --check src modalities tests benchmarks

bench:  ## speed/memory of the latent ops vs a materialising implementation -> docs/results.md
	$(BIN)/python benchmarks/latent_ops.py --out docs/results.md

bench-quality:  ## LZN joint vs supervised CE on digits, 3 seeds each (~30 min on 2 CPU cores) -> a JSON + table
	$(BIN)/python benchmarks/quality.py --part joint --recipe recipes/digits_joint.yaml --seeds 3 \
		--out-json docs/quality_joint_digits.json

clean:
	rm -rf build dist *.egg-info src/*.egg-info .pytest_cache lightning_logs
