"""``cogtrace render TRACE --format F [-o PATH]``: draw a saved trace, no torch or SAT needed.

Text formats (tree, modules, hooks, steps, tokens, dot, svg, html, chrome, training) go to stdout
without ``-o``; png and loss need ``-o``. Output files are written whole or not at all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..schema import Trace

# The formats every trace has; a model's adapter adds views of its own (tokens, cross, ...) that
# --format and --diagram accept by name, checked against the trace's views in render().
FORMATS = ("tree", "modules", "hooks", "steps", "training", "loss", "dot", "svg", "png", "html", "chrome")
DIAGRAMS = ("architecture", "calls", "modules")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", help="a trace.json (or the folder holding it) written by cogtrace")
    parser.add_argument("--format", "-f", default="tree", metavar="FORMAT",
                        help="tree: construction calls; modules: module tree; hooks: SAT hook tables; steps: "
                             "generation steps; dot/svg/png: a diagram (see --diagram); html: the explorer; "
                             "chrome: Chrome/Perfetto trace; training / loss: a fine-tuning trace's tables / loss "
                             "curve PNG; or a view of the trace's model: tokens (CogVLM's token layout), cross "
                             "(CogAgent's high-res branch per step) (default: tree)")
    parser.add_argument("--diagram", default="architecture", metavar="NAME",
                        help="which diagram dot/svg/png draw: architecture, calls, modules, or a view of the trace's "
                             "model (tokens: png only) (default architecture)")
    parser.add_argument("-o", "--output", default=None, metavar="PATH", help="write here instead of stdout")
    parser.add_argument("--width", type=int, default=140, help="terminal text width (default 140)")
    parser.add_argument("--no-timings", action="store_true", help="leave durations out (for diffs)")


def load_trace(spec: str | Path) -> Trace:
    """Read a trace file with one-line errors for every way it can be wrong."""
    from ..schema import SchemaError, Trace

    path = Path(spec)
    if path.is_dir():
        if not (path / "trace.json").is_file():
            raise UserError(f"{path}: no trace.json in this folder (expected a folder written by cogtrace "
                            f"build/run/report, or a trace.json file)")
        path = path / "trace.json"
    if not path.exists():
        raise UserError(f"{spec}: no such trace file (expected a trace.json written by cogtrace build/run/report)")
    try:
        with path.open(encoding="utf-8") as f:
            return Trace.load(f)
    except SchemaError as e:
        raise UserError(f"{path}: {e}") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text file ({e.reason} at byte {e.start}); expected a trace.json") from e
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror or e})") from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise UserError(f"{path}: not a valid cogvlm-tracer trace ({what})") from e


def render(trace: Trace, fmt: str, *, diagram: str = "architecture", width: int = 140,
           timings: bool = True, styles: bool = False) -> str | bytes:
    """The output of one format, as text or bytes; raises UserError for impossible requests.
    Views come from the registry (:mod:`tracer.render.registry`): the generic ones plus those
    of the trace's model adapter."""
    from ..render.diagrams import to_png, to_svg
    from ..render.registry import TextOptions, views_for

    views = views_for(trace)
    if fmt == "html":
        from ..render.report import render_html
        return render_html(trace, timings=timings)
    if fmt == "chrome":
        import io

        from ..export import write_chrome
        buffer = io.StringIO()
        write_chrome(trace, buffer)
        return buffer.getvalue()
    if fmt == "loss":  # a picture under its own name, like --format png --diagram loss
        fmt, diagram = "png", "loss"
    picture = fmt in ("dot", "svg", "png")
    name = diagram if picture else fmt
    view = views.get(name)
    if view is None or not (view.dot or view.png if picture else view.text):
        offered = sorted(k for k, v in views.items() if (v.dot or v.png if picture else v.text) and v.available(trace))
        model = trace.meta.get("model_class") or "this trace's model"
        raise UserError(f"{'--diagram' if picture else '--format'} {name}: no such view for {model}; "
                        f"expected one of {offered}")
    if not view.available(trace):
        raise UserError(f"{'--diagram' if picture else '--format'} {name}: this trace has no data for it "
                        f"({view.caption}); expected a trace that recorded it")
    try:
        if fmt in ("dot", "svg"):
            if view.dot is None:
                raise UserError(f"--diagram {name} is a picture: expected --format png"
                                + (f" (or --format {name} for text)" if view.text else "") + f", not --format {fmt}")
            dot = view.dot(trace)
            return dot if fmt == "dot" else to_svg(dot).decode("utf-8")
        if fmt == "png":
            return view.png(trace) if view.png is not None else to_png(view.dot(trace))  # type: ignore[misc]
        return view.render_text(trace, TextOptions(width=width, timings=timings, styles=styles))
    except view.errors as e:
        raise UserError(str(e)) from e


def run(args: argparse.Namespace) -> int:
    from ..files import write_atomic

    if args.width < 40:
        raise UserError(f"--width {args.width}: expected at least 40 columns")
    if args.output is None and args.format in ("png", "loss"):
        raise UserError("--format png writes binary data: expected -o PATH (e.g. -o architecture.png)")
    if args.output is not None:
        out = Path(args.output)
        if out.is_dir():
            raise UserError(f"-o {out}: is a folder, expected a file name")
        if not out.parent.is_dir():
            raise UserError(f"-o {out}: folder {out.parent} does not exist")
    trace = load_trace(args.trace)
    colour = args.output is None and sys.stdout.isatty()  # colour for a person, plain text for pipes and files
    result = render(trace, args.format, diagram=args.diagram, width=args.width, timings=not args.no_timings,
                    styles=colour)
    if args.output is None:
        sys.stdout.write(result if isinstance(result, str) else result.decode("utf-8"))
        return 0
    path = write_atomic(args.output, result)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)", file=sys.stderr)
    return 0
