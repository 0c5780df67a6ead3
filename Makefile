# Idempotent targets for a fresh Debian machine. `make demo` and `make test` install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := libopencv-dev libturbojpeg0-dev pkg-config g++ python3-dev
# Test-only: the report renders in headless Chromium; the loopback `ray up` test needs sshd + rsync.
TEST_APT_PKGS := chromium
CLUSTER_APT_PKGS := openssh-server rsync
STAMP := $(VENV)/.setup-stamp
export NUMBA_THREADING_LAYER ?= tbb
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup system-deps test-deps demo test test-cluster lint bench clean

setup: $(STAMP)

# System libraries FFCV 1.0.2 builds against: its setup.py probes opencv4 and libturbojpeg with
# pkg-config and fails without them (pip's opencv-python ships no headers). apt-get as root, sudo
# otherwise.
system-deps:
	@if pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then \
	  echo "system-deps: opencv4 and libturbojpeg present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	else \
	  echo "error: FFCV needs system packages ($(APT_PKGS)); run as root or with sudo, or install them yourself" >&2; exit 1; \
	fi

# apt-get as root, sudo otherwise; $(1) = packages, $(2) = a command that is present once installed.
define apt_install
	@if command -v $(2) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1); \
	else echo "note: cannot install $(1) (no root/sudo): the tests that need it are skipped" >&2; fi
endef

test-deps:
	$(call apt_install,$(TEST_APT_PKGS),chromium)

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# Search DASO's parameters on digits-LT (3 scenarios, ~10 min on 2 cores), check each winner
# against the baseline on 3 held-out seeds, export, and end on the verification table (the second
# verify trains nothing: every run has its results).
demo: setup
	$(BIN)/python -m daso_ray.prepare digits --out data/digits --force
	@name=demo_$$(date +%Y%m%d-%H%M%S); set -e; \
	$(BIN)/python -m daso_ray.search search_spaces/digits_lt.yaml --name $$name; \
	$(BIN)/python -m daso_ray.verify runs/search/$$name --seeds 3; \
	$(BIN)/python -m daso_ray.export runs/search/$$name --out runs/search/$$name/best; \
	echo "train a winner: $(BIN)/python -m daso_ray.train runs/search/$$name/best/<file>.yaml --seeds 3"; \
	echo; $(BIN)/python -m daso_ray.verify runs/search/$$name --seeds 3

test: setup test-deps
	$(BIN)/python -m pytest -q -m "not cluster"

# `ray up cluster.local.yaml` against an sshd on loopback, a search job, `ray down` (~3 min; root).
test-cluster: setup
	$(call apt_install,$(CLUSTER_APT_PKGS),/usr/sbin/sshd)
	$(call apt_install,rsync,rsync)
	$(BIN)/python -m pytest -q -s -m cluster tests/test_cluster_up.py

lint: setup
	$(BIN)/ruff check daso_ray tests benchmarks

# The benchmark table (P1-P8, U1, A3, P6q) -> benchmarks/results/latest.json. `make bench BENCH_ARGS=--quick` (~10 min, CPU);
# on a GPU machine: `make bench BENCH_ARGS="--device cuda"`.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data/digits .pytest_cache
