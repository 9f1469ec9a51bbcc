"""Our tracer as the benchmark uses it: one context manager per mode, and what a trace holds.

Modes (the rows of the cost table):

* ``untraced`` — no recording at all;
* ``construction`` — ``tracer.trace(categories=["construction"])``: SAT's construction calls;
* ``runtime`` — ``tracer.trace()`` with every category: construction, module forwards,
  hook dispatches and generation steps (the full trace ``cogtrace report`` records), with the
  default ``max_steps``: the context forward and the first steps in full, later steps as step
  summaries;
* ``runtime-all-steps`` (scaling section only) — the same with ``max_steps=None``: every
  generation step recorded in full.

Traced modes write ``trace.json`` when the block exits, and that write is part of what is
timed: it is part of the cost a user pays.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

__all__ = ["ALL_STEPS", "MODES", "trace_stats", "tracing"]

MODES = ("untraced", "construction", "runtime")
ALL_STEPS = "runtime-all-steps"


def tracing(mode: str, out_dir: str | Path | None) -> AbstractContextManager[Any]:
    """A context manager that records in ``mode`` (see the module docstring) into ``out_dir``."""
    if mode not in (*MODES, ALL_STEPS):
        raise ValueError(f"mode {mode!r}: expected one of {[*MODES, ALL_STEPS]}")
    if mode == "untraced":
        return contextlib.nullcontext()
    from tracer import trace
    if mode == "construction":
        return trace(out_dir, categories=["construction"])  # type: ignore[no-any-return]
    if mode == ALL_STEPS:
        return trace(out_dir, max_steps=None)  # type: ignore[no-any-return]
    return trace(out_dir)  # type: ignore[no-any-return]


def trace_stats(out_dir: str | Path) -> dict[str, Any]:
    """Sizes of the files a traced block wrote and its events per category."""
    out = Path(out_dir)
    files = {p.name: p.stat().st_size for p in sorted(out.glob("*.json"))}
    stats: dict[str, Any] = {"bytes": sum(files.values()), "files": files, "events": 0, "by_category": {}}
    main = out / "trace.json"
    if main.is_file():
        data = json.loads(main.read_text(encoding="utf-8"))
        counts = Counter(str(e.get("category")) for e in data.get("events", []))
        stats.update(events=sum(counts.values()), by_category=dict(counts),
                     trace_json_bytes=files.get("trace.json", 0))
    return stats
