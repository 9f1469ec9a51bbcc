"""What a CogAgent trace says about the high-resolution branch, step by step (standard library only).

Read from events the core already records, nothing extra is hooked:

* the ``encoder`` mixin's forward (a ``module`` event ``mixins.encoder``) under a generation
  step = the high-res encoder ran in that step;
* each ``cross_attention_forward`` dispatch (SAT's default implementation: no mixin serves it)
  with its third argument, ``encoder_outputs``: a tensor (B, cross tokens, width) means the
  keys/values are projected from the encoder's output now; no tensor means SAT's cached
  per-layer keys/values (``mem_cross``) are reused;
* the ``attention_fn`` dispatch inside it (``cross_attention=True``): query (B, heads, S, d)
  and cross keys/values (B, heads, cross tokens, d).

Step summaries (steps beyond the trace's ``max_steps``) have nothing under them to read, so
they are left out and counted on one line below the table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..render.common import summary_steps
from ..schema import Event, Trace

__all__ = ["CrossDispatch", "StepFacts", "cross_steps", "render_cross_steps"]

ENCODER_PATH = "mixins.encoder"


@dataclass(frozen=True)
class CrossDispatch:
    layer_id: int
    query: tuple[int, ...]  # (B, heads, S, head size) as attention_fn received it
    keys: tuple[int, ...]  # (B, heads, cross tokens, head size)
    from_cache: bool  # True: SAT's mem_cross; False: key_value(encoder_outputs) computed in this call


@dataclass(frozen=True)
class StepFacts:
    step: int
    name: str  # "context", "step 1", ...
    tokens_fed: int
    encoder_ran: bool
    encoder_output: tuple[int, ...] | None  # (B, cross tokens, width) when the encoder ran
    cross: tuple[CrossDispatch, ...]


def _shape(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, Mapping) and "shape" in value:
        return tuple(int(d) for d in value["shape"])
    return None


def _descendants(children: Mapping[int, Sequence[Event]], root: int) -> Iterator[Event]:
    stack = list(reversed(children.get(root, ())))
    while stack:
        event = stack.pop()
        yield event
        stack.extend(reversed(children.get(event.id, ())))


def _cross_dispatch(event: Event, children: Mapping[int, Sequence[Event]]) -> CrossDispatch:
    inputs = list(event.data.get("inputs") or [])
    from_cache = len(inputs) < 3 or _shape(inputs[2]) is None
    inner = next((e for e in _descendants(children, event.id) if e.category == "hook" and e.name == "attention_fn"),
                 None)
    shapes = list(inner.data.get("inputs") or []) if inner is not None else []
    query = _shape(shapes[0]) if shapes else None
    keys = _shape(shapes[1]) if len(shapes) > 1 else None
    return CrossDispatch(int(event.data.get("layer_id", -1)), query or (), keys or (), from_cache)


def cross_steps(trace: Trace) -> list[StepFacts]:
    """One :class:`StepFacts` per generation step recorded in full (context forward first), in order."""
    children: dict[int, list[Event]] = defaultdict(list)
    for event in trace.events:
        if event.parent is not None:
            children[event.parent].append(event)
    facts: list[StepFacts] = []
    for step in trace.of("generation"):
        if step.data.get("phase") == "call" or step.data.get("detail") == "summary":
            continue
        encoder: Event | None = None
        cross = []
        for event in _descendants(children, step.id):
            if event.category == "module" and event.name == ENCODER_PATH and encoder is None:
                encoder = event
            elif event.category == "hook" and event.name == "cross_attention_forward":
                cross.append(_cross_dispatch(event, children))
        outputs = list(encoder.data.get("outputs") or []) if encoder is not None else []
        facts.append(StepFacts(int(step.data.get("step", len(facts))), step.name, int(step.data.get("tokens_fed", 0)),
                               encoder is not None, _shape(outputs[0]) if outputs else None, tuple(cross)))
    return facts


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def render_cross_steps(trace: Trace) -> str:
    """A text table: per step, whether the high-res encoder ran and where each layer's cross keys came from."""
    rows = [("step", "fed", "high-res encoder", "cross-attention (layers)", "query", "cross keys/values", "k/v from")]
    for f in cross_steps(trace):
        first = f.cross[0] if f.cross else None
        sources = {"mem_cross cache" if c.from_cache else "key_value(encoder_outputs)" for c in f.cross}
        rows.append((f.name, str(f.tokens_fed), f"ran -> {_dims(f.encoder_output or ())}" if f.encoder_ran else "skipped",
                     str(len(f.cross)), _dims(first.query) if first else "-", _dims(first.keys) if first else "-",
                     ", ".join(sorted(sources)) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summaries = len(summary_steps(trace))
    if summaries:
        lines.append(f"(+ {summaries} later step(s) recorded as step summaries, without their calls: "
                     "--max-steps all records every step in full)")
    return "\n".join(lines) + "\n"
