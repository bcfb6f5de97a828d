# Two commands do all the set-up on a fresh machine with Python >= 3.10 and pip:
#   make demo   - create/reuse .venv, install everything, run the end-to-end demo
#   make test   - create/reuse .venv, install everything, run the test suite
# torch is pinned to the CPU build 2.13.0 and installed first so that no CUDA packages are
# pulled; torchvision (needed by timm) is installed without its dependencies for the same reason.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCHVISION ?= torchvision==0.28.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ecgdigit-installed

.PHONY: venv test demo notebooks bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet --no-deps "$(TORCHVISION)"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# pytest exits 5 when it collects no test: make (and so CI) fails then, as it should.
test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/ecgdigit demo --out demo_out

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/*.py

bench: $(STAMP)
	$(PY) bench/bench_metric.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
