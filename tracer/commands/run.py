"""``cogtrace run [-o DIR] script.py [args...]``: run a Python script under tracing.

Like ``python script.py args...`` (the script runs as ``__main__`` with ``sys.argv`` set and
its folder first on ``sys.path``), with construction and runtime tracing on. The trace is
written even when the script raises; then the traceback is printed as Python would print it
(starting at the script's own frames) and the exit status is 1. ``sys.exit(n)`` in the
script exits with ``n``. A script that opens its own ``tracer.trace()`` block gets a
``TracingError`` (one recording at a time): run it with plain ``python`` instead.

On a machine without CUDA the script runs inside :func:`tracer.cpu.cpu_substitutions`
(SAT's Triton rotary kernel replaced by the same math in torch), so any SAT script runs on a
CPU; the trace names the substitutions in ``meta['cpu_substitutions']``. A script that still
reaches a GPU-only path gets one line naming the call. ``--cpu`` forces the substitutions and
adds :func:`tracer.cogvlm.upstream.upstream_on_cpu` (a torch stand-in for the xformers
attention upstream CogVLM's vision tower imports) and, when timm is absent,
:func:`tracer.cogagent.upstream.timm_stand_in` (the three timm helpers upstream CogAgent's
high-resolution encoder imports).
"""

from __future__ import annotations

import argparse
import contextlib
import runpy
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from ._tracing import add_trace_arguments, check_output, report_written, trace_options

DEFAULT_OUTPUT = "cogtrace-out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser, output_help=f"folder for trace.json and trace.chrome.json (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--cpu", action="store_true",
                        help="force the CPU substitutions (applied anyway when CUDA is absent: torch rotary instead "
                             "of SAT's Triton kernel) and add torch stand-ins for xformers, which upstream CogVLM's "
                             "vision tower imports, and for timm, which upstream CogAgent's high-res encoder imports")
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")


def _script_traceback(tb: TracebackType | None, script: Path) -> TracebackType | None:
    """Drop our own frames (cli, runpy) so the traceback starts where the script's does."""
    current = tb
    while current is not None:
        if Path(current.tb_frame.f_code.co_filename).resolve() == script:
            return current
        current = current.tb_next
    return tb


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    script = Path(args.script)
    if not script.is_file():
        raise UserError(f"{args.script}: no such script (expected a Python file to run)")
    options = trace_options(args)
    out = check_output(args.output or DEFAULT_OUTPUT)

    from ..session import trace

    script = script.resolve()
    from ..cpu import cpu_substitutions, gpu_only_path

    meta: dict[str, Any] = {"command": "run", "script": str(args.script), "argv": list(args.script_args),
                            "cpu_shims": bool(args.cpu)}
    # Recorded in memory and written after the script, so a failure to write the trace is told
    # apart from a failure of the script (and never printed as the script's traceback).
    handle = trace(None, meta=meta, **options)
    shims = contextlib.ExitStack()  # the CPU substitutions, undone in the finally below
    code = 0
    # Changed only here, inside the try whose finally puts them back.
    saved_argv, saved_path = sys.argv, list(sys.path)
    try:
        handle.meta["cpu_substitutions"] = shims.enter_context(cpu_substitutions(force=args.cpu))
        if args.cpu:
            from ..cogvlm.upstream import upstream_on_cpu

            shims.enter_context(upstream_on_cpu())
            handle.meta["cpu_substitutions"].append("xformers: memory_efficient_attention -> torch stand-in")
            from ..cogagent.upstream import timm_stand_in  # upstream CogAgent's high-res encoder imports timm

            if shims.enter_context(timm_stand_in()):
                handle.meta["cpu_substitutions"].append("timm: drop_path, to_2tuple, trunc_normal_ -> torch stand-in")
        sys.argv = [str(args.script), *args.script_args]
        sys.path.insert(0, str(script.parent))
        with handle:
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        _write(handle, out, None)
        raise
    except Exception as e:  # noqa: BLE001 - printed as Python would, after the trace is written
        gpu = gpu_only_path(e)
        if gpu is not None:
            print(f"error: {gpu}", file=sys.stderr)
        else:
            traceback.print_exception(type(e), e, _script_traceback(e.__traceback__, script))
        code = 1
    finally:
        shims.close()
        sys.argv, sys.path[:] = saved_argv, saved_path
    _write(handle, out, code)
    return code


def _write(handle: Any, out: Path, code: int | None) -> None:
    """Write the recorded trace to ``out``; a failure is ours, said as such with the script's status."""
    from ..errors import OutputError
    from ..files import describe_os_error
    from ..session import write_files

    if handle.trace is None:  # the block never ran (e.g. the CPU substitutions failed to start)
        return
    try:
        handle.paths = write_files(handle.trace, out)
    except OSError as e:
        status = "was interrupted" if code is None else f"exited with status {code}"
        raise OutputError(f"could not write the trace: {describe_os_error(out, e)} "
                          f"(the script itself {status})") from e
    report_written(handle.paths)
