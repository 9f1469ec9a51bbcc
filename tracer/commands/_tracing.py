"""Tracing options shared by ``build``, ``run`` and ``shapes``: output folder and filters.

Only argparse here (no torch, no SAT): it runs for ``cogtrace --help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..schema import DEFAULT_MAX_STEPS

# Kept in step with tracer.schema.CATEGORIES (importing it would be fine, but this stays tiny).
CATEGORY_NAMES = ("construction", "module", "hook", "generation")  # the default
ACCEPTED = (*CATEGORY_NAMES, "training")  # training: SAT's training path, asked for explicitly


def add_trace_arguments(parser: argparse.ArgumentParser, *, output_help: str) -> None:
    group = parser.add_argument_group("tracing")
    group.add_argument("-o", "--output", metavar="DIR", default=None, help=output_help)
    group.add_argument("--depth", type=int, default=None, metavar="N",
                       help="record events nested at most N deep (default: no limit)")
    group.add_argument("--categories", default=None, metavar="LIST",
                       help=f"comma-separated subset of {','.join(ACCEPTED)} (default: all but training)")
    add_max_steps_argument(group)


def add_max_steps_argument(group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    group.add_argument("--max-steps", default=str(DEFAULT_MAX_STEPS), metavar="N",
                       help="generation steps recorded in full per filling_sequence call after the context "
                            "forward; later steps are recorded as step summaries (tokens, cache length, time). "
                            f"'all' records every step in full (default: {DEFAULT_MAX_STEPS})")


def trace_options(args: argparse.Namespace) -> dict[str, Any]:
    """Checked keyword arguments for :func:`tracer.trace` from the parsed options."""
    categories: tuple[str, ...] = CATEGORY_NAMES
    if args.categories is not None:
        categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
        unknown = [c for c in categories if c not in ACCEPTED]
        if unknown or not categories:
            raise UserError(f"--categories {args.categories!r}: expected a comma-separated subset of "
                            f"{','.join(ACCEPTED)}")
    if args.depth is not None and args.depth < 0:
        raise UserError(f"--depth {args.depth}: expected a non-negative integer")
    return {"categories": categories, "max_depth": args.depth, "max_steps": max_steps(args.max_steps)}


def max_steps(text: str) -> int | None:
    """``--max-steps``: a non-negative integer, or ``all`` (None: every step in full)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UserError(f"--max-steps {text}: expected a non-negative integer or 'all'")
    return value


def check_output(path: str) -> Path:
    """The ``-o`` folder, refused before any model work if it cannot be written (see
    :func:`tracer.files.check_writable_folder`); the trace is later swapped in as a whole."""
    from ..files import check_writable_folder

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {path}: exists and is not a directory (expected a folder for trace.json "
                        f"and trace.chrome.json)")
    return check_writable_folder(out)


def report_written(paths: dict[str, Path]) -> None:
    if paths:
        print("trace written: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
