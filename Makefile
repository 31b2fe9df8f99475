# `make demo` and `make test` each set up .venv (pinned) on first use, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt --no-compile
STAMP := $(VENV)/.installed
NOT_IMPORTED := /tests/|/transformers/models/(?!(auto|clip|videomae|audio_spectrogram_transformer|encoder_decoder)/)[^/]+/|/ray/(rllib|llm)/

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	@# pip byte-compiles one file after another (site-packages: 18,832 files, 51 s CPU): here on every core at once;
	@# as pip, a file that does not compile is skipped (torch ships one written for Python 3.12). Not compiled (29% of
	@# the source, 18 of 62 CPU-s): what no tam process imports, packages' own tests/, the transformers models other
	@# than tam's encoders' (CLIP, VideoMAE, AST), Ray's RLlib and LLM libraries; Python compiles them if ever imported
	$(BIN)/python -m compileall -qq -j 0 -x '$(NOT_IMPORTED)' $(VENV)/lib || true
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
