"""``cogtrace``: the command line. Each subcommand lives in ``tracer/commands/<name>.py``.

Subcommand modules are imported only when their command runs, so ``cogtrace --help`` does
not pay for importing torch and SAT (3-6 s).

Every command runs with SAT's and DeepSpeed's log lines captured (:mod:`tracer.chatter`;
``--verbose`` shows them), SIGTERM turned into a clean exit (so staged output folders are
removed, never left half-written), and an operating-system error at the edges (a read-only or
full output folder) printed as one line naming the path and the reason.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from ._version import __version__
from .errors import UserError

# name -> (module under tracer.commands, one-line help). Order is the order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "build a CogVLM config through SAT's get_model (tiny on CPU, full size on meta)"),
    "run": ("run", "run a Python script with SAT construction and runtime tracing (like python -m viztracer)"),
    "shapes": ("shapes", "trace every tensor shape of a forward at full width, on meta weights (no memory)"),
    "chat": ("chat", "chat about an image with CogVLM, as upstream's cli_demo_sat.py (tiny checkpoints run on CPU)"),
    "finetune": ("finetune", "fine-tune CogVLM on a CPU through SAT's training_main + DeepSpeed, full or LoRA, traced"),
    "report": ("report", "trace construction and one chat turn, then write the HTML report and every view to a folder"),
    "merge": ("merge", "merge the per-rank traces of a model-parallel run (torchrun) into one trace and one report"),
    "render": ("render", "draw a saved trace: call tree, module tree, hooks, steps, tokens, diagrams, HTML, Chrome"),
    "diff": ("diff", "compare two traces (or configs, or scripts): calls, mixins, hooks, modules, shapes, steps"),
    "summary": ("summary", "torchinfo's summary of a tiny model next to cogtrace's view of the same forward"),
    "doctor": ("doctor", "check this machine: Python, torch, SAT (and the `sat` name clash), Triton, Graphviz, CUDA"),
}
VERBOSE_HELP = "print SAT's and DeepSpeed's log lines as they come (they are kept in the trace's meta either way)"
TERMINATED = 128 + signal.SIGTERM


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cogtrace",
        description="See how CogVLM is built and runs on SwissArmyTransformer.",
    )
    parser.add_argument("--version", action="version", version=f"cogtrace {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        # Each module's add_arguments() only touches argparse: no heavy imports here.
        mod = importlib.import_module(f"tracer.commands.{module}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        # Accepted after the command name too; SUPPRESS keeps the top-level value otherwise.
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        mod.add_arguments(command)
    return parser


class Terminated(SystemExit):
    """SIGTERM, raised where the program is: it unwinds through every ``with``, so staging
    folders are removed and the previous output stays as it was."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(TERMINATED)


def main(argv: Sequence[str] | None = None) -> int:
    from .chatter import LibraryLog

    args = _parser().parse_args(argv)
    module = importlib.import_module(f"tracer.commands.{COMMANDS[args.command][0]}")
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        with LibraryLog(verbose=args.verbose):
            return int(module.run(args) or 0)
    except UserError as e:
        print(f"cogtrace {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write or read at the edges that the command did not foresee
        from .files import describe_os_error

        print(f"cogtrace {args.command}: error: {describe_os_error(None, e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cogtrace {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"cogtrace {args.command}: terminated", file=sys.stderr)
        return TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
