"""Exports: trace.json round-trips and is deterministic; trace.chrome.json is valid Chrome
Trace Event Format (complete events, microseconds, proper nesting)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_forward_inputs

import tracer
from tracer.cogvlm.build import build_model
from tracer.export import to_chrome, write_chrome
from tracer.schema import CATEGORIES, DEFAULT_CATEGORIES, Trace

CONFIG = "configs/tiny/cogvlm-grounding-generalist"


def _record(out: Path | None = None) -> Trace:
    with tracer.trace(out, chrome=True) as handle:  # the Chrome file is written on request
        result = build_model(CONFIG)
        with torch.no_grad():
            result.model(**tiny_forward_inputs(result.args))
    assert handle.trace is not None
    return handle.trace


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, Path]:
    out = tmp_path_factory.mktemp("trace")
    return _record(out), out


def _without_times(trace: Trace) -> dict[str, Any]:
    raw = trace.to_json()
    for event in raw["events"]:
        event.pop("start_ns")
        event.pop("duration_ns")
    return raw


def test_identical_input_gives_identical_trace(recorded: tuple[Trace, Path]) -> None:
    first, _ = recorded
    assert _without_times(_record()) == _without_times(first)


def test_files_written_and_json_round_trips(recorded: tuple[Trace, Path]) -> None:
    trace, out = recorded
    assert {p.name for p in out.iterdir()} == {"trace.json", "trace.chrome.json"}
    with (out / "trace.json").open() as f:
        loaded = Trace.load(f)
    assert loaded == trace
    assert loaded.schema_version == 1 and {e.category for e in loaded.events} == set(DEFAULT_CATEGORIES) - {"generation"}


def test_chrome_trace_is_valid(recorded: tuple[Trace, Path]) -> None:
    trace, out = recorded
    doc = json.loads((out / "trace.chrome.json").read_text())
    events = doc["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert {e["ph"] for e in events} == {"X", "M"} and len(complete) == len(trace.events)
    for e in complete:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(e)
        assert e["cat"] in CATEGORIES and e["dur"] >= 0 and e["pid"] == 1 and e["tid"] == 1
    # Children lie inside their parents on the (single) timeline: Perfetto draws them nested.
    by_id = {e["args"]["event_id"]: e for e in complete}
    for event in trace.events:
        if event.parent is not None:
            child, parent = by_id[event.id], by_id[event.parent]
            assert parent["ts"] <= child["ts"] and child["ts"] + child["dur"] <= parent["ts"] + parent["dur"] + 1e-3
    hook = next(e for e in complete if e["cat"] == "hook" and e["name"] == "mlp_forward"
                and e["args"]["model_path"] == "")
    assert hook["args"]["served_by"] == "mlp" and hook["args"]["inputs"][0].endswith("float32")
    assert hook["args"]["source"].split(":")[0].endswith("tracer/cogvlm/mixins.py")
    add = next(e for e in complete if e["name"] == "BaseModel.add_mixin")
    assert add["args"]["source"].endswith(".py:" + add["args"]["source"].rsplit(":", 1)[1])
    assert doc["otherData"]["model_class"] == "CogVLMModel"


def test_chrome_writer_is_a_stream_function(recorded: tuple[Trace, Path]) -> None:
    trace, _ = recorded
    stream = io.StringIO()
    write_chrome(trace, stream)
    assert json.loads(stream.getvalue()) == json.loads(json.dumps(to_chrome(trace)))
