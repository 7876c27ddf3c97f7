# Quick start:  make train   |   make test
# Everything runs inside a local virtual environment ($(VENV)); no root needed.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

ARGS        ?=
PYTEST_ARGS ?=

STAMP_VENV    := $(VENV)/.stamp-venv
STAMP_RUNTIME := $(VENV)/.stamp-runtime
STAMP_DEV     := $(VENV)/.stamp-dev

.DEFAULT_GOAL := help
.PHONY: help train test notebooks install setup setup-dev clean distclean

help:
	@echo "Targets:"
	@echo "  make train      set up $(VENV) (runtime deps) and run 'python -m gald.train \$$(ARGS)'"
	@echo "  make test       set up $(VENV) (all extras) and run pytest, then the notebooks under nbval"
	@echo "  make notebooks  re-execute the notebooks in place (regenerates their stored outputs)"
	@echo "  make install    install runtime + dev dependencies into $(VENV)"
	@echo "  make clean      remove build artefacts and caches (keeps $(VENV))"
	@echo "  make distclean  clean, and also remove $(VENV)"
	@echo "  make help       show this message"
	@echo "Variables: VENV=$(VENV) PYTHON=$(PYTHON) ARGS='$(ARGS)' PYTEST_ARGS='$(PYTEST_ARGS)'"

# Create the virtual environment only if it does not exist yet.
$(STAMP_VENV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	touch $@

# Editable install of the package with its runtime dependencies.
$(STAMP_RUNTIME): pyproject.toml | $(STAMP_VENV)
	$(PY) -m pip install -e '.'
	touch $@

# Editable install with every extra: the tests cover export, the app, detection and the notebooks.
$(STAMP_DEV): pyproject.toml | $(STAMP_VENV)
	$(PY) -m pip install -e '.[all]'
	touch $@

setup: $(STAMP_RUNTIME)

setup-dev: $(STAMP_DEV)

install: $(STAMP_RUNTIME) $(STAMP_DEV)

train: $(STAMP_RUNTIME)
	$(PY) -m gald.train $(ARGS)

# Test paths come from [tool.pytest.ini_options] in pyproject.toml; then the notebooks' stored
# outputs are compared with a fresh run (nbval), typed exactly as the README gives it to users: the
# venv's bin first on PATH, no flags. The notebooks name the `python3` kernel, which resolves to the
# venv's Python (ipykernel puts that kernelspec in the venv; tests/test_notebooks_outputs.py checks).
test: $(STAMP_DEV)
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)
	PATH="$(abspath $(VENV))/bin:$$PATH" pytest --nbval notebooks/

# Re-execute every notebook in place (stores new outputs), in the environment CI tests them in.
notebooks: $(STAMP_DEV)
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do \
	  $(abspath $(PY)) -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; done

clean:
	rm -rf build dist .eggs *.egg-info .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage notebooks/runs
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -type d -name '*.egg-info' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
