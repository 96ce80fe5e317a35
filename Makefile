# Quick start: `make demo` and `make test` work from a fresh clone on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel where the package index serves it (as on this project's machines); elsewhere use
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu". Never a multi-GB CUDA build in CI.
TORCH_SPEC ?= torch==2.13.0
# The peers the curvature and surface benchmarks compare with (setup.cfg's `bench` extra), installed without their dependencies so that pip
# never replaces torch; einops, einconv and linear_operator are what `import curvlinops` needs.
BENCH_PEERS := pyhessian==0.1 curvlinops-for-pytorch==3.0.1 hessian-eigenthings==1.0.0a5 loss-landscapes==3.0.6 einops==0.8.2 \
	einconv==0.1.0 linear_operator==0.6.1

.PHONY: demo test test-slow test-all bench install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# From an empty workdir: cached results are keyed by their settings, not by the code that computed them, so a
# workdir kept from an older tree would put that tree's numbers into results/quick (docs/results.md, Determinism).
demo: $(VENV)/.installed
	rm -rf runs/quick
	OMP_NUM_THREADS=1 $(VENV)/bin/landscape --threads 1 study --preset quick --workdir runs/quick --report-dir results/quick

test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(BENCH_PEERS)
	$(PY) benchmarks/curvature_vs_peers.py | tee results/curvature_vs_peers.txt
	$(PY) benchmarks/eigen_bounds.py | tee results/eigen_bounds.txt
	$(PY) benchmarks/fusion_speed.py | tee results/fusion_speed.txt
	PYTHONPATH=. $(PY) benchmarks/fusion_coverage.py | tee results/fusion_coverage.txt
	$(PY) benchmarks/surface_speed.py | tee results/surface_speed.txt
	$(PY) benchmarks/distributed_hvp.py | tee results/distributed_hvp.txt
	$(PY) benchmarks/store_reliability.py | tee results/store_reliability.txt
	$(PY) benchmarks/study_cost.py | tee results/study_cost.txt

clean:
	rm -rf $(VENV) runs *.egg-info
