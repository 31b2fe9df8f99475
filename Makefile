# `make demo` and `make test` each set up .venv (pinned) on first use, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tam demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
