# Two commands do everything on a fresh clone:
#   make demo   - create .venv, install, run a short NVT simulation of aspirin with the bundled model
#   make test   - create .venv, install, check formatting and lint (ruff), run the test suite
#                 (fast tests; `make test-all` adds slow ones)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch pinned for this machine (installs from local disk in seconds).
# With a GPU: make setup TORCH_SPEC="torch>=2.4" (or install torch yourself first).
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-all bench clean docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) md/demo.py

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: setup lint docs
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing or every test was deselected"; fi; \
	exit $$rc

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any broken link or reference.
docs: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/mkdocs build --strict --quiet

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) scripts/bench_pyg.py

clean:
	rm -rf $(VENV) outputs .pytest_cache site

# MACE as a peer row (issue 11): a separate env, outside the package's dependencies. torch is pinned
# first and again with mace-torch, so pip never swaps in a CUDA build. Measured to install together:
# torch 2.13.0+cpu, mace-torch 0.3.16, e3nn 0.4.4 (mace-torch's own pin), matscipy 1.3.1.
PEERS_VENV ?= .venv-peers
MACE_SPEC ?= mace-torch==0.3.16
.PHONY: bench-peers
$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(PEERS_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)" "$(MACE_SPEC)"
	touch $@

bench-peers: setup $(PEERS_VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) scripts/bench_peers.py --peers-python $(PEERS_VENV)/bin/python
