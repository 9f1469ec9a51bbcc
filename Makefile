# One-stop set-up and entry points. `make report` and `make test` install everything on a
# fresh machine (a virtualenv in .venv, the CPU torch wheel, SAT, Graphviz's `dot`).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
OUT     ?= out

.PHONY: setup report test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/ensure_graphviz.sh
	bash scripts/ensure_graphviz.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The pin takes the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH)
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/cogtrace build tracer/cogvlm/configs/tiny/cogvlm-grounding-generalist --device cpu

test: $(STAMP)
	$(BIN)/ruff check tracer tests
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(OUT)
