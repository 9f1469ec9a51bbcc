"""``--nproc N`` for ``cogtrace chat`` and ``cogtrace report``, and rank awareness for ``cogtrace run``.

The commands check everything the user typed in this process first (config, world size,
image, query), make sure a tiny config's mp=1 checkpoint exists (generated here, once, in a
single process), then spawn the ranks through :func:`tracer.parallel.launch.launch`.
``report`` then merges the per-rank traces and writes the parallel views.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_parallel_arguments", "chat_parallel", "rank_run", "report_parallel"]


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model parallel (SAT mpu on torch.distributed, gloo on CPU)")
    group.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="split the model across N ranks spawned with torchrun (model_parallel_size N)")
    group.add_argument("--master-port", type=int, default=None, metavar="PORT",
                       help="torch.distributed rendezvous port (default: a free one)")
    group.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="stop every rank after S seconds (default 600; none with --debug-port)")
    group.add_argument("--debug-port", type=int, default=None, metavar="PORT",
                       help="rank r waits for a debugger (debugpy, e.g. VS Code's 'Attach to rank r') on PORT + r")


def _prepare(config: Any, nproc: int, seed: int = 1234) -> None:
    from ..cogvlm.checkpoint import _looks_like_checkpoint, generated_checkpoint
    from .checks import check_world_size

    check_world_size(config.values, nproc)
    if not _looks_like_checkpoint(config.directory):
        generated_checkpoint(config, seed)  # single process: every rank then splits it at load


def _launch(job: list[str], args: argparse.Namespace, log: Path | None = None) -> int:
    from .launch import DEBUG_TIMEOUT, DEFAULT_TIMEOUT, launch

    timeout = args.timeout if args.timeout is not None else DEBUG_TIMEOUT if args.debug_port else DEFAULT_TIMEOUT
    return launch(job, args.nproc, master_port=args.master_port, timeout=timeout, log=log,
                  debug_port=args.debug_port)


def chat_parallel(args: argparse.Namespace, config: Any) -> int:
    """``cogtrace chat CONFIG --nproc N``: upstream cli_demo_sat.py under torchrun."""
    _prepare(config, args.nproc)
    job = ["chat", str(config.directory), "--max-length", str(args.max_length), "--top-p", str(args.top_p),
           "--top-k", str(args.top_k), "--temperature", str(args.temperature), "--seed", str(args.seed),
           "--output", str(args.output)]
    for flag, value in (("--query", args.query), ("--image", args.image), ("--version", args.version),
                        ("--tokenizer", args.tokenizer), ("--max-new-tokens", getattr(args, "max_new_tokens", None))):
        if value is not None:
            job += [flag, str(value)]
    return _launch(job, args)


def _full_counterpart(config: Any) -> Path | None:
    """configs/full/<name> for a tiny config of the same name: the size users ask about."""
    from ..cogvlm.config import CONFIG_ROOT

    full = CONFIG_ROOT / "full" / config.name
    return full if (full / "model_config.json").is_file() else None


def report_parallel(args: argparse.Namespace, config: Any, out: Path, query: str, max_length: int,
                    image_path: str, version: str) -> int:
    """``cogtrace report CONFIG --nproc N -o DIR``: trace every rank, merge, write the views."""
    from ..files import write_atomic
    from ..render.parallel import render_parallel_html, render_parallel_text
    from .memory import memory_table
    from .merge import load_rank_traces, write_merged

    _prepare(config, args.nproc, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    job = ["chat", str(config.directory), "--query", query, "--image", image_path, "--version", version,
           "--max-length", str(max_length), "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed),
           "--output", str(out / "output.png"),
           "--trace", str(out), "--max-steps", str(args.max_steps),
           "--command", f"cogtrace report {args.config} --nproc {args.nproc}"]
    if args.tokenizer is not None:
        job += ["--tokenizer", str(args.tokenizer)]
    _launch(job, args, log=out / "torchrun.log")
    merged = write_merged(out)
    traces = load_rank_traces(out)
    full = _full_counterpart(config)
    memory = [memory_table(full)] if full is not None else []
    write_atomic(out / "memory.json", json.dumps(memory, indent=1) + "\n")
    write_atomic(out / "parallel.txt", render_parallel_text(traces, memory))
    page = write_atomic(out / "report.html", render_parallel_html(
        traces, memory, diagram_svg=_collectives_svg(traces[0], out),
        links={"merged Chrome/Perfetto trace": merged.name,
               **{f"rank {r} trace": f"rank{r}/trace.json" for r in range(len(traces))}}))
    collectives = sum(1 for t in traces for _ in t.of("collective"))
    print(f"{len(traces)} ranks traced ({collectives} collectives); merged trace: {merged}; report: {page}")
    return 0


def _collectives_svg(trace: Any, out: Path) -> str | None:
    """``collectives.dot`` / ``.svg`` in ``out``; the SVG text for the report (None without Graphviz)."""
    import sys

    from ..files import write_atomic
    from ..render.diagrams import GraphvizMissing, to_svg
    from ..render.parallel import collectives_dot

    dot = collectives_dot(trace)
    write_atomic(out / "collectives.dot", dot)
    try:
        svg = to_svg(dot)
    except GraphvizMissing as e:
        print(f"note: diagram skipped: {e}", file=sys.stderr)
        return None
    write_atomic(out / "collectives.svg", svg)
    text = svg.decode("utf-8")
    return text[text.find("<svg"):]  # inline: without the XML prolog and DOCTYPE


@contextlib.contextmanager
def rank_run(handle: Any) -> Iterator[None]:
    """For ``cogtrace run`` under plain torchrun (``WORLD_SIZE`` > 1): record collectives, and end
    with a recorded barrier that aligns the per-rank traces. A no-op in a single process."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        yield
        return
    import torch

    from .collectives import record_collectives
    from .layout import parallel_layout
    from .rank import ALIGN_MARK

    def note_layout(recorder: Any) -> None:  # runs when the trace is built, while the model is still held
        model = recorder.primary_model()
        if model is not None and torch.distributed.is_initialized():
            handle.meta["parallel_layout"] = parallel_layout(model, torch.distributed.get_rank(),
                                                             torch.distributed.get_world_size())

    handle.recorder.finalizers.append(note_layout)
    with record_collectives(handle.recorder):
        try:
            yield
        finally:
            if torch.distributed.is_initialized():
                token, _ = handle.recorder.begin("collective", ALIGN_MARK, {"op": ALIGN_MARK, ALIGN_MARK: True,
                                                                            "bytes": 0})
                try:
                    torch.distributed.barrier()
                finally:
                    handle.recorder.end(token)


def rank_output(out: Path) -> tuple[Path, dict[str, Any]]:
    """``cogtrace run -o OUT`` under torchrun writes ``OUT/rank<r>/``; meta gets rank and world size."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size <= 1:
        return out, {}
    rank = int(os.environ.get("RANK", 0))
    return out / f"rank{rank}", {"rank": rank, "world_size": size, "model_parallel_size": size}
