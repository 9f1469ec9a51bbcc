# One-stop set-up and entry points. `make report` and `make test` install everything on a
# fresh machine (a virtualenv in .venv, the CPU torch wheel, SAT, Graphviz's `dot`).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
OUT     ?= out

.PHONY: setup report test lint bench bench-quick clean docs walkthroughs train-tiny

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/apt_install.sh scripts/ensure_graphviz.sh scripts/ensure_chromium.sh scripts/ensure_fonts.sh
	bash scripts/ensure_graphviz.sh
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_fonts.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The pin takes the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH)
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/cogtrace report tracer/cogvlm/configs/tiny/cogvlm-grounding-trained --max-new-tokens 24 -o $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check tracer tests walkthroughs scripts bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# Regenerate docs/diagrams/ (a traced tiny run and the full-size model on meta),
# docs/breakpoints.md (SAT file:line from the installed SAT) and docs/comparisons/ (cogtrace diff
# of LLaMA vs CogVLM and of two tiny configs). Commit the result.
docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py
	$(BIN)/python scripts/gen_breakpoints.py
	$(BIN)/python scripts/gen_comparisons.py

# The article, step by step (Enter between steps). `make walkthroughs WALK="--lang zh --no-pause"`.
WALK ?=
walkthroughs: $(STAMP)
	$(BIN)/python walkthroughs/run_all.py $(WALK)

# Benchmarks (bench/, issue 7): `make bench` measures everything and rewrites docs/benchmarks.md
# and docs/benchmarks-scaling.png (about 10-15 min on 2 cores); `make bench-quick` is a smoke run
# that writes out/bench-quick/. The peers (torchview, torchlens, viztracer) and the profiler come
# from the `bench` extra, installed here with the same CPU torch pin.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]' $(TORCH)
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	BENCH_COMMAND="make bench" $(BIN)/python -m bench --profile

bench-quick: $(BENCH_STAMP)
	BENCH_COMMAND="make bench-quick" $(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) $(OUT)

# Retrain the shipped tiny checkpoint (configs/tiny/cogvlm-grounding-trained) from its seed: NOT part
# of CI. The command of the run that made it (single-object scenes for 4,000 steps, then 1-3 object
# scenes; the shipped weights are its step 4,000, reached after 38 min on 2 busy cores, 1 thread; the
# whole run takes about 65 min). Writes out/train-tiny/log.jsonl (loss every 50 steps, held-out scores
# every 1,000) and out/train-tiny/best; --install copies the best weights next to the config.
train-tiny: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/train_tiny.py -o $(OUT)/train-tiny --steps 9000 --single-steps 4000 \
		--multi-share 0.4 --eval-every 1000 --eval-questions 30 --install
