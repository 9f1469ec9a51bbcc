"""The generation steps: one context forward, then one token per step with the KV cache.

Pieces of sampled tokens come from ``meta['token_layout']`` and, for tokens not in the
prompt, from ``meta['token_pieces']`` (``{"878": "▁dog"}``, filled by ``cogtrace report``).

This is ``filling_sequence`` made visible — the context pass feeds the whole prompt (image
slots included) and fills ``mems``; each later step feeds one token and the cache grows by
one position. The table counts the module forwards and SAT hook dispatches under each step,
which shows how much cheaper a cached step is. Steps beyond the trace's ``max_steps`` are
step summaries (``detail: "summary"``): their calls were not recorded, so they have no counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from ..schema import Trace
from .common import (
    children_index,
    descendants,
    duration_text,
    has_token_split,
    shapes_text,
    step_span,
    summary_steps,
)

__all__ = ["StepRow", "render_steps", "step_rows", "summary_note"]


@dataclass(frozen=True)
class StepRow:
    step: int
    phase: str
    tokens_fed: int
    sequence_length: int  # positions in the sequence after this step's tokens
    mems: str
    sampled_token: int | None
    piece: str
    modules: int | None  # module forwards recorded under this step (None: a summary step)
    hooks: int | None  # SAT hook dispatches recorded under this step (None: a summary step)
    vision_tokens: int | None  # tokens routed to the vision experts (from mlp_forward branch facts)
    duration_ns: int
    summary: bool = False  # recorded as the step event alone (beyond max_steps)


def _piece(token: int | None, vocab: Mapping[int, str]) -> str:
    return "" if token is None else vocab.get(token, "")


def step_rows(trace: Trace) -> list[StepRow]:
    index = children_index(trace.events)
    layout = trace.meta.get("token_layout") or {}
    vocab: dict[int, str] = {}
    if isinstance(layout, Mapping):
        for tok, piece in zip(layout.get("tokens") or [], layout.get("pieces") or [], strict=False):
            vocab.setdefault(int(tok), str(piece))
    extra = trace.meta.get("token_pieces")
    if isinstance(extra, Mapping):
        vocab.update({int(k): str(v) for k, v in extra.items()})
    rows = []
    steps = [e for e in trace.of("generation") if e.data.get("phase") != "call"]  # 'call' wraps the steps
    for i, e in enumerate(sorted(steps, key=lambda e: (e.start_ns, e.id))):
        counts: Counter[str] = Counter()
        vision = 0
        for child in descendants(index, e):
            counts[child.category] += 1
            if child.category == "hook" and child.data.get("hook") == "mlp_forward":
                vision = max(vision, int((child.data.get("branch") or {}).get("vision_tokens", 0) or 0))
        d = e.data
        token = d.get("sampled_token")
        piece = _piece(token, vocab)
        summary = d.get("detail") == "summary"
        rows.append(StepRow(int(d.get("step", i)), str(d.get("phase", "")), int(d.get("tokens_fed", 0) or 0),
                            int(d.get("sequence_length", d.get("context_length", 0)) or 0), shapes_text([d.get("mems")]) or "none",
                            None if token is None else int(token), piece,
                            None if summary else counts["module"], None if summary else counts["hook"],
                            None if summary else vision, e.duration_ns, summary))
    return rows


def maybe_count(value: int | None) -> str:
    """A count, or "-" for a summary step (nothing recorded to count)."""
    return "-" if value is None else str(value)


def summary_note(trace: Trace) -> str:
    """One line saying which steps are summaries and how to record them in full ('' if none)."""
    summaries = summary_steps(trace)
    if not summaries:
        return ""
    full = trace.meta.get("max_steps")
    return (f"steps {step_span(summaries)}: step summaries (tokens, cache, time), their module and hook calls not recorded: a "
            f"cached step runs the same path as steps 1–{full}; --max-steps all records every step in full")


def render_steps(trace: Trace, *, width: int = 140, timings: bool = True, styles: bool = False) -> str:
    from rich.table import Table

    from .terminal import export_text

    table = Table(title="Generation steps (filling_sequence: a context forward, then one token per step; fed = tokens "
                        "fed to the model, modules/hooks = calls recorded inside the step)",
                  title_justify="left", header_style="bold", show_edge=False, box=None, pad_edge=False)
    columns = ["step", "phase", "fed", "seq len", "KV cache (mems) in", "sampled token",
               "modules", "hooks"]
    split = has_token_split(trace)
    if split:
        columns.append("vision tokens")
    if timings:
        columns.append("time")
    for name in columns:
        left = name in ("phase", "KV cache (mems) in", "sampled token")
        # A sampled piece can be anything (CJK is double width): cut it rather than squeeze the numbers.
        table.add_column(name, justify="left" if left else "right", no_wrap=True,
                         max_width=24 if name == "sampled token" else None,
                         overflow="ellipsis" if name == "sampled token" else "fold",
                         min_width=None if left else max(len(name), 4 if name != "time" else 9))
    rows = step_rows(trace)
    for r in rows:
        token = "" if r.sampled_token is None else str(r.sampled_token) + (f" {r.piece!r}" if r.piece else "")
        cells = [str(r.step), r.phase, str(r.tokens_fed), str(r.sequence_length), r.mems, token,
                 maybe_count(r.modules), maybe_count(r.hooks)] + ([maybe_count(r.vision_tokens)] if split else [])
        if timings:
            cells.append(duration_text(r.duration_ns))
        table.add_row(*cells)
    parts: list[object] = [table if rows else "(no generation events in this trace)"]
    note = summary_note(trace)
    if note:
        parts.append(note)
    if trace.meta.get("response") is not None:
        parts.append(f"response: {trace.meta['response']!r}")
    return export_text(parts, width=width, styles=styles)
