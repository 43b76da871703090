# coupled: `make train` trains the default recipe (configs/mnist.yaml), `make test` runs the tests.
# Everything runs from the virtual environment in $(VENV), which `make install` creates.

PYTHON        ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
# torch is installed first and pinned (a bare `torch` would pull a multi-GB CUDA build);
# override e.g. `make install TORCH_VERSION=2.5.1 TORCH_INDEX=https://download.pytorch.org/whl/cu124`
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=
# a local mirror of the data sets (folders mnist/, fashion_mnist/ of hub parquet files); default
# ../shared/data where that folder exists, else nothing (the data come from the Hugging Face hub)
DATA_DIR      ?= $(if $(wildcard ../shared/data/.),../shared/data,)
CONFIG        ?= configs/mnist.yaml
ARGS          ?=
REF           ?=

DATA_ENV := $(if $(DATA_DIR),COUPLED_DATA_DIR=$(abspath $(DATA_DIR)),)

.PHONY: install lock train resume test test-slow lint bench reproduce clean help

help:
	@echo "make install            virtual env in $(VENV): torch==$(TORCH_VERSION), then pip install -e .[dev] -c constraints.txt"
	@echo "make lock               rewrite constraints.txt from the environment (after changing the dependencies)"
	@echo "make train [ARGS=...]   train $(CONFIG) (installs when needed); DATA_DIR=$(DATA_DIR)"
	@echo "make resume REF=...     continue a run: REF=wandb:[[ENTITY/]PROJECT/]model-RUNID[:latest|:best|:vN] or a .ckpt"
	@echo "make test               the test suite on TEST_WORKERS=2 processes (make test-slow: the slow tests too)"
	@echo "make lint               ruff"
	@echo "make bench / reproduce  benchmarks (reports/BENCH.md) / the paper's results (reports/RESULTS.md, QUICK=1,"
	@echo "                        VARIANTS=1: also the recipe variants; FRONTIER=1: the frontier study instead)"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	touch $@

# constraints.txt pins every dependency but torch to the versions the tests and reports last ran with, so a
# rebuilt environment is the same one (torch keeps its own pin above); refresh it after changing the deps
lock: install
	{ echo "# pip constraints: every dependency but torch as last tested (make lock rewrites this file)"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i -E '^(torch|nvidia-.*|triton)=='; } > constraints.txt

$(BIN)/python:
	$(MAKE) install

train: install
	$(DATA_ENV) $(BIN)/coupled fit --config $(CONFIG) $(ARGS)

resume: install
	@test -n "$(REF)" || { echo "make resume: set REF=wandb:model-RUNID:latest (or a checkpoint path)"; exit 2; }
	$(DATA_ENV) $(BIN)/coupled fit --config $(CONFIG) --ckpt_path $(REF) $(ARGS)

# two pytest-xdist workers: most of the suite's time is subprocesses starting Python and waiting on each other
# (one process: 11 min 3 s; two workers: 7 min 22 s, on 2 cores); TEST_WORKERS=0 runs everything in one process
TEST_WORKERS  ?= 2
TEST_OPTS     := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

test: install
	$(BIN)/python -m pytest $(TEST_OPTS) $(ARGS)

test-slow: install
	$(BIN)/python -m pytest $(TEST_OPTS) -m "" $(ARGS)

lint: $(BIN)/python
	$(BIN)/python -m ruff check .

bench: $(BIN)/python
	$(DATA_ENV) $(BIN)/python -m scripts.bench $(ARGS)

reproduce: $(BIN)/python
	$(DATA_ENV) QUICK=$(QUICK) VARIANTS=$(VARIANTS) FRONTIER=$(FRONTIER) $(BIN)/python -m scripts.reproduce $(ARGS)

clean:
	rm -rf runs lightning_logs .pytest_cache .ruff_cache
