# Two commands from a fresh clone:  make train  |  make test
# Each creates .venv on first use and installs the package into it (editable).
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of torch installs fast and small; `make TORCH=torch` takes the newest (CUDA) one.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: train test install ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=68" wheel

# The stamp is rebuilt when pyproject.toml changes, so new dependencies get installed.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,sweeps,mlflow]"
	# The editable package's bytecode, once: where PYTHONDONTWRITEBYTECODE is set (this project's CI
	# machine) each process would compile src/ again, ~0.1 s of every hydrafit-train the tests start.
	$(BIN)/python -m compileall -q src
	touch $@

install: $(VENV)/.installed

# The dashboards (mlflow ui, optuna-dashboard) in an environment of their own: full mlflow
# installs scipy, which Lightning's torchmetrics would then import in every run (~0.7 s). The
# packages are pyproject.toml's `ui` extra, read from there.
UI_VENV ?= .venv-ui
$(UI_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(UI_VENV)
	$(UI_VENV)/bin/python -m pip install --quiet $$($(UI_VENV)/bin/python -c "import tomllib; \
		print(' '.join(p for p in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['ui']))")
	touch $@

ui: $(UI_VENV)/.installed

train: install
	$(BIN)/hydrafit-train $(ARGS)

# Two workers (pytest-xdist), each running whole test files: module fixtures are built once.
# Not the cluster tests: they need root and system packages (make test-cluster).
PYTEST_ARGS ?= -n 2 --dist loadfile
test: install ui
	$(BIN)/python -m pytest -m "not cluster" $(PYTEST_ARGS)

# tests/cluster against real services it starts itself (a one-node SLURM cluster with accounting,
# a PostgreSQL server), ~2 min. Needs root and apt-get: the Debian packages are installed when one
# is missing (dpkg-query shows "ii" for each installed one). Noninteractive, so that no package's
# configuration question waits for a terminal. The services use ports of their own, so the system
# ones that apt may start elsewhere do not collide with them.
CLUSTER_PACKAGES := slurm-wlm munge slurmdbd mariadb-server postgresql
.PHONY: test-cluster cluster-packages
cluster-packages:
	@if dpkg-query -W -f='$${db:Status-Abbrev}\n' $(CLUSTER_PACKAGES) 2>&1 | grep -qv '^ii'; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(CLUSTER_PACKAGES); fi

# The postgres extra (psycopg 3) on top of what make install puts in .venv.
$(VENV)/.installed-postgres: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,sweeps,mlflow,postgres]"
	touch $@

test-cluster: cluster-packages $(VENV)/.installed-postgres
	$(BIN)/python -m pytest -m cluster tests/cluster

# The benchmark rows, baseline vs hydrafit, ~14 min; writes benchmarks/results.md (BENCH_ARGS=--quick: tiny)
.PHONY: bench
bench: install
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(UI_VENV) build src/*.egg-info
