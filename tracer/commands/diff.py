"""``cogtrace diff A B``: what differs between two traces, like diff(1) for SAT runs.

A and B are each a saved trace (``trace.json`` or the folder holding it), a config folder
(traced as ``cogtrace build CONFIG`` does: construction only) or a Python script (traced as
``cogtrace run SCRIPT`` does, without arguments). Exit status as diff(1): 0 when the traces
agree, 1 when they differ, 2 for bad input. Volatile fields (times, addresses, absolute
paths) never count; see :mod:`tracer.diff`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..schema import Trace

FORMATS = ("text", "json", "html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="trace.json (or its folder), a config folder, or a script.py")
    parser.add_argument("b", metavar="B", help="the same for the other side")
    parser.add_argument("--format", "-f", choices=FORMATS, default="text",
                        help="text: tables per section (default); json: every difference and the aligned call "
                             "trees; html: the explorer in two columns, differences highlighted")
    parser.add_argument("-o", "--output", default=None, metavar="PATH", help="write here instead of stdout")
    parser.add_argument("--width", type=int, default=140, help="terminal text width (default 140)")
    parser.add_argument("--all", action="store_true", help="text: every row (default: 40 per section)")


def obtain(spec: str) -> tuple[Trace, str]:
    """The trace behind one side, and how to name it."""
    from .render import load_trace

    path = Path(spec)
    if path.suffix == ".py":
        if not path.is_file():
            raise UserError(f"{spec}: no such script (expected a trace.json, a config folder or a script.py)")
        return _trace_script(path), f"{spec} (traced)"
    if path.is_dir() and (path / "model_config.json").is_file() and not (path / "trace.json").is_file():
        return _trace_config(spec), f"{spec} (traced build)"
    if path.name == "model_config.json" and path.is_file():
        return _trace_config(spec), f"{spec} (traced build)"
    trace = load_trace(spec)
    what = trace.meta.get("config") or trace.meta.get("script") or trace.meta.get("model_class")
    return trace, f"{spec}" + (f" ({what})" if what else "")


def _trace_config(spec: str) -> Trace:
    from ..adapters import adapter_for_config
    from ..session import trace as record

    adapter = adapter_for_config(spec)
    config = adapter.load_config(spec)  # a broken config fails here with its one-line reason
    with record(None, meta={"command": "build", "config": str(spec), "device": "cpu"}) as handle:
        adapter.build(config, device="cpu")
    assert handle.trace is not None  # set when the block exits
    return handle.trace


def _trace_script(script: Path) -> Trace:
    import runpy

    from ..session import trace as record

    saved_argv, saved_path = sys.argv, list(sys.path)
    handle = record(None, meta={"command": "run", "script": str(script), "argv": []})
    try:
        sys.argv = [str(script)]
        sys.path.insert(0, str(script.resolve().parent))
        with handle:
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise UserError(f"{script}: the script exited with status {e.code} (expected it to run to the end)") from e
    except Exception as e:  # noqa: BLE001 - a failing script is bad input here, named in one line
        raise UserError(f"{script}: the script raised {type(e).__name__}: {e}") from e
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    assert handle.trace is not None
    return handle.trace


def run(args: argparse.Namespace) -> int:
    from ..diff import diff_traces
    from ..files import write_atomic

    if args.width < 40:
        raise UserError(f"--width {args.width}: expected at least 40 columns")
    if args.output is not None:
        out = Path(args.output)
        if out.is_dir():
            raise UserError(f"-o {out}: is a folder, expected a file name")
        if not out.parent.is_dir():
            raise UserError(f"-o {out}: folder {out.parent} does not exist")
    trace_a, name_a = obtain(args.a)
    trace_b, name_b = obtain(args.b)
    diff = diff_traces(trace_a, trace_b, a_name=name_a, b_name=name_b)
    if args.format == "json":
        text = json.dumps(diff.to_json(), ensure_ascii=False, indent=1) + "\n"
    elif args.format == "html":
        from ..render.explorer import render_diff_html

        text = render_diff_html(diff, trace_a, trace_b)
    else:
        from ..render.diffview import render_diff_text

        colour = args.output is None and sys.stdout.isatty()
        text = render_diff_text(diff, width=args.width, limit=0 if args.all else 40, styles=colour)
    if args.output is None:
        sys.stdout.write(text)
    else:
        path = write_atomic(args.output, text)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)", file=sys.stderr)
    return 0 if diff.same else 1
