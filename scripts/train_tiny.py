"""Train the shipped tiny checkpoint (``make train-tiny``; not part of CI: ~40 min on 2 cores).

    python scripts/train_tiny.py -o out/train-tiny [--steps N] [--box-only-steps N] [--init DIR] [--install]

``make train-tiny`` runs it three times, each from the previous run's best checkpoint (``--init``):
box questions only (``--box-only-steps``), then with the word questions mixed in, then asking
colour more often (``--colour-weight``).

Writes ``OUT/log.jsonl`` (loss and lr every 50 steps, held-out scores every ``--eval-every``)
and ``OUT/best`` (SAT layout). ``--install`` copies the best weights next to the trained config,
``tracer/cogvlm/configs/tiny/cogvlm-grounding-trained``, where ``cogtrace chat`` loads them.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time

from tracer.cogvlm.config import CONFIG_ROOT
from tracer.finetune.recipe import Recipe, train_tiny


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="out/train-tiny")
    defaults = Recipe()
    for field in dataclasses.fields(Recipe):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name))
    parser.add_argument("--install", action="store_true", help="copy the best weights into the shipped config")
    args = parser.parse_args()
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)})
    started = time.perf_counter()
    best = train_tiny(args.output, recipe, log=lambda line: print(line, flush=True))
    print(f"trained in {(time.perf_counter() - started) / 60:.1f} min; best checkpoint: {best}")
    if args.install:
        target = CONFIG_ROOT / "tiny" / "cogvlm-grounding-trained"
        iteration = (best / "latest").read_text().strip()
        shutil.rmtree(target / iteration, ignore_errors=True)
        for old in target.iterdir():
            if old.is_dir():
                shutil.rmtree(old)
        shutil.copytree(best / iteration, target / iteration)
        shutil.copy(best / "latest", target / "latest")
        print(f"installed into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
