"""Per-rank traces into one Chrome/Perfetto trace: one lane (process) per rank, aligned at a barrier.

Each rank's clock starts when its own recording starts, at a slightly different moment. Every
rank's trace opens with an ``align`` event around a ``torch.distributed.barrier()``
(:func:`tracer.parallel.rank.traced_rank`): the barrier returns on all ranks at (nearly) the
same instant, so the merge shifts each lane so that the ends of the ``align`` events coincide.

Pure functions of the traces: no torch, no SAT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..export import chrome_events
from ..files import write_atomic
from ..schema import Trace
from ..session import TRACE_FILE

__all__ = ["MERGED_FILE", "MergeError", "align_offset_ns", "load_rank_traces", "merge_chrome", "write_merged"]

MERGED_FILE = "trace.chrome.json"
ALIGN_MARK = "align"  # tracer.parallel.rank.ALIGN_MARK (kept here so this module needs no torch)


class MergeError(UserError):
    """Per-rank traces that cannot be merged (missing ranks, different jobs, no barrier)."""


def load_rank_traces(out: str | Path) -> list[Trace]:
    """``<out>/rank<r>/trace.json`` for r = 0 .. world_size - 1, in rank order."""
    out = Path(out)
    files = sorted(out.glob(f"rank*/{TRACE_FILE}"), key=lambda p: int(p.parent.name[4:] or 0))
    if not files:
        raise MergeError(f"{out}: no rank*/{TRACE_FILE}; expected the per-rank traces of a model-parallel run")
    traces = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            traces.append(Trace.load(f))
    sizes = {int(t.meta.get("world_size", 0)) for t in traces}
    ranks = [int(t.meta.get("rank", -1)) for t in traces]
    if len(sizes) != 1 or ranks != list(range(len(traces))) or sizes != {len(traces)}:
        raise MergeError(f"{out}: ranks {ranks} with world sizes {sorted(sizes)}; expected one trace per rank "
                         f"0..N-1 of one run (a rank that died leaves no trace)")
    return traces


def align_offset_ns(trace: Trace) -> int:
    """The end of the trace's alignment barrier, in its own clock."""
    for event in trace.events:
        if event.category == "collective" and event.data.get(ALIGN_MARK):
            return event.start_ns + event.duration_ns
    raise MergeError(f"rank {trace.meta.get('rank')}: its trace has no alignment barrier; expected a trace "
                     f"written by tracer.parallel.rank.traced_rank")


def merge_chrome(traces: Sequence[Trace]) -> dict[str, Any]:
    """One Chrome trace document: pid = rank, lanes named ``rank r``, times aligned."""
    offsets = [align_offset_ns(t) for t in traces]
    base = max(offsets)  # shift so that no event gets a negative time
    events: list[dict[str, Any]] = []
    for trace, offset in zip(traces, offsets, strict=True):
        rank = int(trace.meta["rank"])
        shift_us = (base - offset) / 1000.0
        for item in chrome_events(trace):
            item = dict(item, pid=rank)
            if item.get("ph") == "M" and item["name"] == "process_name":
                item["args"] = {"name": f"rank {rank} of {len(traces)}"}
            elif item.get("ph") == "X":
                item["ts"] = item["ts"] + shift_us
            events.append(item)
        events.append({"name": "process_sort_index", "ph": "M", "pid": rank, "args": {"sort_index": rank}})
    first = traces[0].meta
    other = {k: v for k, v in first.items() if isinstance(v, (str, int, float, bool)) and k != "rank"}
    other["ranks"] = len(traces)
    other["aligned_at"] = "end of the align barrier"
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def write_merged(out: str | Path) -> Path:
    """Merge ``<out>/rank*/trace.json`` into ``<out>/trace.chrome.json``; returns its path."""
    doc = merge_chrome(load_rank_traces(out))
    path = Path(out) / MERGED_FILE
    write_atomic(path, json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
    return path
