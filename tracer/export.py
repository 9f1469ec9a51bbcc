"""Write a :class:`~tracer.schema.Trace` as ``trace.json`` (our schema) or ``trace.chrome.json``.

The Chrome Trace Event Format file opens in Perfetto (https://ui.perfetto.dev) and
``chrome://tracing``: one complete event (``"ph": "X"``) per recorded call, ``ts``/``dur``
in microseconds, ``name`` the qualified function or module name, ``cat`` the category
(construction, module, hook, generation), ``args`` the facts a reader looks for in the
side panel — shapes as ``[1, 1264, 64] float32``, the mixin that served a hook, the
source location. All events share one pid/tid: the recording follows a single thread, and
nesting in the timeline is the call nesting.

Pure functions of the trace: no torch, no SAT.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

from .schema import Event, TensorInfo, Trace

__all__ = ["CHROME_PID", "CHROME_TID", "chrome_events", "to_chrome", "write_chrome", "write_json"]

CHROME_PID = 1
CHROME_TID = 1
_SHAPE_KEYS = ("inputs", "outputs")


def write_json(trace: Trace, stream: TextIO) -> None:
    """``trace.json``: the trace in our versioned schema (docs/trace-schema.md)."""
    trace.dump(stream)


def _shape(value: Any) -> Any:
    if isinstance(value, Mapping) and "shape" in value and "dtype" in value:
        return TensorInfo.describe(value["shape"], value["dtype"])
    return value


def _args(event: Event) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for key, value in event.data.items():
        if key in _SHAPE_KEYS and isinstance(value, list):
            args[key] = [_shape(v) for v in value]
        elif key in ("kwargs", "mems") and value is not None:
            args[key] = ({k: _shape(v) for k, v in value.items()} if key == "kwargs" else _shape(value))
        else:
            args[key] = value
    if event.source is not None:
        args["source"] = str(event.source)
    if event.error is not None:
        args["error"] = event.error
    args["event_id"] = event.id
    return args


def chrome_events(trace: Trace) -> list[dict[str, Any]]:
    """The trace's events as Chrome complete events, in recording order."""
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": CHROME_PID, "tid": CHROME_TID,
         "args": {"name": f"cogvlm-tracer: {trace.meta.get('model_class', 'trace')}"}},
        {"name": "thread_name", "ph": "M", "pid": CHROME_PID, "tid": CHROME_TID, "args": {"name": "main"}},
    ]
    for event in trace.events:
        out.append({
            "name": event.name,
            "cat": event.category,
            "ph": "X",
            "ts": event.start_ns / 1000.0,
            "dur": event.duration_ns / 1000.0,
            "pid": CHROME_PID,
            "tid": CHROME_TID,
            "args": _args(event),
        })
    return out


def to_chrome(trace: Trace) -> dict[str, Any]:
    """The whole Chrome trace document (JSON object form, with metadata)."""
    meta = {k: v for k, v in trace.meta.items() if isinstance(v, (str, int, float, bool)) or v is None}
    if trace.exception is not None:
        meta["exception"] = trace.exception
    return {"traceEvents": chrome_events(trace), "displayTimeUnit": "ms", "otherData": meta}


def write_chrome(trace: Trace, stream: TextIO) -> None:
    # json.dumps without indent runs the C encoder; json.dump to a stream never does.
    stream.write(json.dumps(to_chrome(trace), separators=(",", ":"), ensure_ascii=False))
    stream.write("\n")
