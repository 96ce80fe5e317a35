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
# The documentation site's tools (setup.cfg's `docs` extra), installed without their dependencies like the peers;
# the rest of what mkdocs imports (click, Jinja2, packaging, python-dateutil) comes with the install.
DOCS_PKGS := mkdocs==1.6.1 Markdown==3.11.3 mergedeep==1.3.4 mkdocs-get-deps==0.2.2 pathspec==1.1.1 pyyaml_env_tag==1.1 \
	ghp-import==2.1.0 watchdog==7.1.0 platformdirs==4.14.9 PyYAML==6.0.4
# The model libraries the tests and `landscape wrap --arch torchvision:/timm:/hf:` use (setup.cfg's `models` extra),
# without their dependencies so that pip never replaces torch: these pins import together on torch 2.13, and the
# small pure-Python packages after safetensors are what transformers and huggingface_hub import.
MODEL_LIBS := torchvision==0.28.0 timm==1.0.31 transformers==5.25.0 huggingface_hub==2.4.0 tokenizers==0.23.3 \
	safetensors==0.8.0 httpx2==2.16.2 httpcore2==2.16.2 h11==0.16.0 truststore==0.10.5 idna==3.20 pyyaml==6.0.4 \
	regex==2026.11.19 packaging tqdm

# The packages whose docstring examples run as doctests in `make test` (docs/conventions.md).
DOCTESTED := landscape fusion

.PHONY: demo demo-otfusion test test-slow test-all bench docs install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(DOCS_PKGS)
	$(PY) -m pip install -q --no-deps $(MODEL_LIBS)
	touch $@

install: $(VENV)/.installed

# From an empty workdir: cached results are keyed by their settings, not by the code that computed them, so a
# workdir kept from an older tree would put that tree's numbers into results/quick (docs/results.md, Determinism).
demo: $(VENV)/.installed
	rm -rf runs/quick
	OMP_NUM_THREADS=1 $(VENV)/bin/landscape --threads 1 study --preset quick --workdir runs/quick --report-dir results/quick

demo-otfusion: $(VENV)/.installed
	rm -rf runs/quick-otfusion
	OMP_NUM_THREADS=1 $(VENV)/bin/landscape --threads 1 study --preset quick-otfusion --workdir runs/quick-otfusion \
		--report-dir results/quick-otfusion

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check landscape fusion cli tests benchmarks setup.py
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q --doctest-modules $(DOCTESTED)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(BENCH_PEERS)
	$(PY) benchmarks/curvature_vs_peers.py | tee results/curvature_vs_peers.txt
	PYTHONPATH=. $(PY) benchmarks/curvature_vs_peers.py --suite | tee results/curvature_suite.txt
	$(PY) benchmarks/eigen_bounds.py | tee results/eigen_bounds.txt
	$(PY) benchmarks/fusion_speed.py | tee results/fusion_speed.txt
	PYTHONPATH=. $(PY) benchmarks/fusion_coverage.py | tee results/fusion_coverage.txt
	$(PY) benchmarks/surface_speed.py | tee results/surface_speed.txt
	$(PY) benchmarks/distributed_hvp.py | tee results/distributed_hvp.txt
	$(PY) benchmarks/store_reliability.py | tee results/store_reliability.txt
	$(PY) benchmarks/study_cost.py | tee results/study_cost.txt
	$(PY) benchmarks/acts_at.py | tee results/acts_at.txt

docs: $(VENV)/.installed
	$(PY) -m cli.docs cli > docs/.cli.md.tmp && mv docs/.cli.md.tmp docs/cli.md
	$(PY) -m cli.docs api > docs/.api.md.tmp && mv docs/.api.md.tmp docs/api.md
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) runs site *.egg-info
