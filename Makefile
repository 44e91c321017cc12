# Everything a newcomer needs: `make demo` and `make test` set up .venv and the Debian libraries.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBS   := libopus0 portaudio19-dev espeak-ng sox pulseaudio pulseaudio-utils opus-tools ffmpeg \
          xvfb xdotool python3-tk iproute2 util-linux tmux fonts-wqy-zenhei \
          postgresql nats-server etcd-server etcd-client

.PHONY: all deps check lint test demo cluster-demo bench clean

# Machines of this kind set PYTHONDONTWRITEBYTECODE=1: every `ptt` process a test starts (about
# 1,100 per run) would compile the package from source again, ~0.15 s of CPU each (~165 s of the
# suite's ~700). The package is compiled once below and the cache is kept.
unexport PYTHONDONTWRITEBYTECODE

all: test

deps: $(STAMP)

$(STAMP): pyproject.toml scripts/ensure-debs.sh
	@scripts/ensure-debs.sh $(DEBS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,bench,cluster]'
	@touch $(STAMP)

# Lint, types (strict on the sans-I/O cores) and the import layers of pyproject.toml.
check: $(STAMP)
	$(VENV)/bin/ruff check ptt tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lint: check

# --maxschedchunk 2: pytest-xdist hands each worker at most two tests at a time. By default each
# worker first gets a quarter of its share as one consecutive run (~117 tests) and keeps it: the
# worker whose run was the acceptance tests (~10 s each) ran on alone for 750 s after the other
# two had finished (a loaded full run, 1,408 tests: workers done at 567, 663 and 1,411 s).
# -rR: the summary names each test run again (a real-time module's one retry, tests/conftest.py),
# so that a retried test is known from the CI log alone.
test: check
	@$(PY) -m compileall -q -j 0 ptt
	$(PY) -m pytest -q -rR -n 3 --maxschedchunk 2 --durations=25

demo: $(STAMP)
	@$(PY) -m compileall -q -j 0 ptt
	$(PY) examples/demo.py

cluster-demo: $(STAMP)
	@$(PY) -m compileall -q -j 0 ptt
	$(PY) examples/cluster_demo.py

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
