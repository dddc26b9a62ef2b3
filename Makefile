# lzn-lightning developer commands. `make install` once, then `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install test test-slow test-all test-ddp lint bench bench-gradients bench-classify bench-quality \
	bench-quality-mnist clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python  ## create .venv and install lzn-lightning with dev extras (editable)
	$(BIN)/pip install -e ".[dev]"

test:  ## fast suite, under 5 min on 2 CPU cores: unit, integration, digits recipe runs (CPU only, no network)
	$(BIN)/pytest -m "not slow and not gpu" -q

test-slow:  ## the slow tests alone: docs commands, real recipes and data, DDP (CI runs them after make test)
	$(BIN)/pytest -m "slow and not gpu" -q

test-all:  ## everything that runs on CPU, including slow real-data tests
	$(BIN)/pytest -m "not gpu" -q

test-ddp:
	$(BIN)/pytest -m ddp -q

lint:
	$(BIN)/ruff check src modalities tests benchmarks experiments
	$(BIN)/ruff format --check src modalities tests benchmarks experiments

bench:  ## speed/memory of the latent ops vs a materialising implementation -> docs/performance.md
	$(BIN)/python benchmarks/latent_ops.py --out docs/performance.md

bench-gradients:  ## float32 value/gradient errors of the latent ops at training geometry (~5 min) -> docs/performance.md
	$(BIN)/python benchmarks/gradient_accuracy.py --out docs/performance.md

bench-classify:  ## model.classify's bank context vs its batch context, and a 50,000-item bank (~1 min) -> docs/performance.md
	$(BIN)/python benchmarks/classify_contexts.py --out docs/performance.md

bench-quality:  ## the paper's 3 claims vs their baselines on digits, 3 seeds (~2 h on 2 CPU cores) -> JSONs + tables
	$(BIN)/python benchmarks/quality.py --part joint --recipe recipes/digits_joint.yaml --seeds 3 \
		--out-json docs/quality_joint_digits.json
	$(BIN)/python benchmarks/quality.py --part gen --recipe recipes/digits_gen.yaml --seeds 3 \
		--out-json docs/quality_gen_digits.json --img-prefix docs/img/gen_digits
	$(BIN)/python benchmarks/quality.py --part repr --recipe recipes/digits_repr.yaml --seeds 3 \
		--out-json docs/quality_repr_digits.json

bench-quality-mnist:  ## the same on MNIST-5k, 1 seed (~2.5 h on 2 CPU cores) -> JSONs + tables
	$(BIN)/python benchmarks/quality.py --part joint --recipe recipes/mnist_joint.yaml --seeds 1 \
		--out-json docs/quality_joint_mnist.json
	$(BIN)/python benchmarks/quality.py --part gen --recipe recipes/mnist_gen.yaml --seeds 1 \
		--out-json docs/quality_gen_mnist.json --img-prefix docs/img/gen_mnist
	$(BIN)/python benchmarks/quality.py --part repr --recipe recipes/mnist_repr.yaml --seeds 1 \
		--out-json docs/quality_repr_mnist.json

clean:
	rm -rf build dist *.egg-info src/*.egg-info .pytest_cache lightning_logs
