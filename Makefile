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
	$(BIN)/ruff check tracer tests walkthroughs scripts bench examples
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
# of CI. A curriculum of three runs on single-object scenes (about 40 min on 2 busy cores, 1 thread),
# each continuing from the previous run's best checkpoint: 6,500 steps of box questions only (104,000
# samples); 2,500 steps with colour/shape/count/position questions mixed in (4 box questions in 10);
# 2,000 steps asking colour more often (6 in 16, box 3 in 16), with a cosine lr decay.
# Each run writes DIR/log.jsonl (loss every 50 steps, held-out scores every 500) and DIR/best;
# --install copies the last run's best weights next to the config.
train-tiny: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/train_tiny.py -o $(OUT)/train-tiny/boxes --steps 6500 \
		--box-only-steps 6500 --single-steps 6500 --decay-from 1.0 --eval-every 500 --eval-questions 40
	OMP_NUM_THREADS=1 $(BIN)/python scripts/train_tiny.py -o $(OUT)/train-tiny/words \
		--init $(OUT)/train-tiny/boxes/best --steps 3000 --stop-after 2500 --single-steps 3000 --box-weight 4 \
		--warmup 100 --decay-from 0.3 --eval-every 500 --eval-questions 40
	OMP_NUM_THREADS=1 $(BIN)/python scripts/train_tiny.py -o $(OUT)/train-tiny/colour \
		--init $(OUT)/train-tiny/words/best --steps 2000 --single-steps 2000 --box-weight 3 --colour-weight 6 \
		--warmup 50 --decay-from 0.4 --eval-every 500 --eval-questions 40 --install
