"""``cogtrace build CONFIG [-o DIR]``: the article's section 2 — build CogVLM with SAT's ``get_model``.

With ``-o DIR`` the build runs under :func:`tracer.trace` and ``DIR/trace.json`` and
``DIR/trace.chrome.json`` hold every construction call (get_args, update_args_with_file,
overwrite_args_by_dict, get_model, the ``__init__`` chain, each add_mixin/del_mixin with
its parameter and hook-table deltas).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from typing import Any

from ._tracing import add_trace_arguments, check_output, report_written, trace_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config folder or model_config.json (e.g. configs/tiny/cogvlm-chat-v1.1)")
    parser.add_argument("--device", choices=["cpu", "meta"], default="cpu",
                        help="cpu: real weights (tiny configs); meta: shapes only, no memory (full size)")
    parser.add_argument("--num-layers", type=int, default=None, metavar="N",
                        help="override num_layers of the language model, as the article does (2)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the initial weights (default: SAT's 1234)")
    parser.add_argument("--print-model", action="store_true", help="also print(model), as the article does")
    add_trace_arguments(parser, output_help="trace the construction into DIR/trace.json and DIR/trace.chrome.json")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(args: argparse.Namespace) -> int:
    from ..adapters import adapter_module, entry_for_config

    entry = entry_for_config(args.config)  # light: reads model_class, imports nothing heavy
    adapter = adapter_module(entry).ADAPTER
    config = adapter.load_config(args.config)  # bad configs fail here
    if args.num_layers is not None and args.num_layers <= 0:
        from ..errors import UserError
        raise UserError(f"--num-layers {args.num_layers}: expected a positive integer")
    options = trace_options(args)
    out = check_output(args.output) if args.output is not None else None

    recording: Any = contextlib.nullcontext()
    if out is not None:
        from ..session import trace

        meta = {"command": "build", "config": str(config.path), "device": args.device,
                "num_layers": args.num_layers}
        recording = trace(out, meta=meta, chrome=True, **options)
    start = time.perf_counter()
    with recording as handle:
        result = adapter.build(config, device=args.device, num_layers=args.num_layers,
                               **({} if args.seed is None else {"seed": args.seed}))
    elapsed = time.perf_counter() - start
    if args.print_model:
        print(result.model)
    print(adapter.build_summary(result, seconds=elapsed, peak_rss_mb=_peak_rss_mb()))
    if handle is not None:
        report_written(handle.paths)
    return 0
