"""``cogtrace``: the command line. Each subcommand lives in ``tracer/commands/<name>.py``.

Subcommand modules are imported only when their command runs, so ``cogtrace --help`` does
not pay for importing torch and SAT (3-6 s, DESIGN.md §4).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import UserError

# name -> (module under tracer.commands, one-line help). Order is the order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "build a CogVLM config through SAT's get_model (tiny on CPU, full size on meta)"),
    "run": ("run", "run a Python script with SAT construction and runtime tracing (like python -m viztracer)"),
    "shapes": ("shapes", "trace every tensor shape of a forward at full width, on meta weights (no memory)"),
    "chat": ("chat", "chat about an image with CogVLM, as upstream's cli_demo_sat.py (tiny checkpoints run on CPU)"),
    "finetune": ("finetune", "fine-tune CogVLM on a CPU through SAT's training_main + DeepSpeed, full or LoRA, traced"),
    "report": ("report", "trace construction and one chat turn, then write the HTML report and every view to a folder"),
    "render": ("render", "draw a saved trace: call tree, module tree, hooks, steps, tokens, diagrams, HTML, Chrome"),
    "summary": ("summary", "torchinfo's summary of a tiny model next to cogtrace's view of the same forward"),
    "doctor": ("doctor", "check this machine: Python, torch, SAT (and the `sat` name clash), Triton, Graphviz, CUDA"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cogtrace",
        description="See how CogVLM is built and runs on SwissArmyTransformer.",
    )
    parser.add_argument("--version", action="version", version=f"cogtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        # Each module's add_arguments() only touches argparse: no heavy imports here.
        mod = importlib.import_module(f"tracer.commands.{module}")
        mod.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    module = importlib.import_module(f"tracer.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"cogtrace {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cogtrace {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
