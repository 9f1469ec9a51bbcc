"""Views of a model-parallel run: who holds what, collectives per layer, hooks per rank, memory per rank.

Inputs are the per-rank traces (``<out>/rank<r>/trace.json``, each with ``meta.rank``,
``meta.world_size`` and ``meta.parallel_layout``) and, optionally, memory tables from
:func:`tracer.parallel.memory.memory_table` (plain dicts). Standard library only, like every
renderer: a saved run renders on a machine without torch.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..schema import Event, Trace
from .common import recorded_note

__all__ = ["CollectiveRow", "collective_rows", "collectives_dot", "hook_counts", "render_parallel_html",
           "render_parallel_text", "who_holds_what_svg"]

RANK_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")
_LAYER_INDEX = re.compile(r"\.(\d+)(?=\.|$)")
MPU_PREFIX = "mpu."


def _fold(path: str) -> str:
    """``transformer.layers.1.attention`` -> ``transformer.layers.*.attention`` (one row per role)."""
    return _LAYER_INDEX.sub(".*", path)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


@dataclass(frozen=True)
class CollectiveRow:
    layer: str  # folded module path of the nearest enclosing module call ("" = outside any forward)
    op: str
    count: int
    bytes: int
    shapes: str  # one example


def _enclosing_module(event: Event, by_id: Mapping[int, Event]) -> str:
    parent = event.parent
    while parent is not None:
        e = by_id[parent]
        if e.category == "module":
            return str(e.data.get("path") or e.name)
        parent = e.parent
    return ""


def _shape_text(event: Event) -> str:
    infos = event.data.get("outputs") or event.data.get("inputs") or event.data.get("shapes") or []
    return ", ".join("x".join(str(s) for s in i.get("shape", [])) for i in infos[:2] if isinstance(i, Mapping))


def collective_rows(trace: Trace) -> list[CollectiveRow]:
    """Collectives of one rank grouped by (layer role, op): SAT mpu regions, and torch.distributed
    calls made outside them (input broadcasts, the split-at-load sends, barriers)."""
    by_id = trace.by_id()
    count: Counter[tuple[str, str]] = Counter()
    size: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for e in trace.of("collective"):
        parent = by_id.get(e.parent) if e.parent is not None else None
        if parent is not None and parent.category == "collective":
            continue  # the torch.distributed call inside an mpu region: counted by the region
        key = (_fold(_enclosing_module(e, by_id)), e.name)
        count[key] += 1
        size[key] += int(e.data.get("bytes") or 0)
        example.setdefault(key, _shape_text(e))
    return [CollectiveRow(layer, op, count[(layer, op)], size[(layer, op)], example[(layer, op)])
            for layer, op in sorted(count)]


def collectives_dot(trace: Trace) -> str:
    """The forward's layer roles in the order they first ran, each with the collectives it adds
    (calls over the whole run, one example shape, bytes on this rank): the architecture as the ranks see it."""
    from .diagrams import edge, graph, node

    rows = collective_rows(trace)
    by_layer: dict[str, list[CollectiveRow]] = defaultdict(list)
    for row in rows:
        if row.layer:
            by_layer[row.layer].append(row)
    order: list[str] = []
    for e in trace.of("module"):
        role = _fold(str(e.data.get("path") or ""))
        if role in by_layer and role not in order:
            order.append(role)
    lines = []
    for i, role in enumerate(order):
        ops = "\n".join(f"{r.op} x{r.count} ({r.shapes}, {r.bytes:,} B)" for r in by_layer[role])
        lines.append(node(f"n{i}", f"{role}\n{ops}", fillcolor="#fde9c9"))
        if i:
            lines.append(edge(f"n{i - 1}", f"n{i}"))
    rank = trace.meta.get("rank", 0)
    return graph("collectives", lines, extra=f' label="collectives per layer, rank {rank}" labelloc=t')


def hook_counts(traces: Sequence[Trace]) -> dict[str, list[int]]:
    """Hook name -> dispatches per rank (outer dispatches: a default nested in a mixin's is not
    counted twice)."""
    table: dict[str, list[int]] = defaultdict(lambda: [0] * len(traces))
    for rank, trace in enumerate(traces):
        by_id = trace.by_id()
        for e in trace.of("hook"):
            parent = by_id.get(e.parent) if e.parent is not None else None
            if parent is not None and parent.category == "hook" and parent.name == e.name:
                continue
            table[e.name][rank] += 1
    return dict(sorted(table.items()))


def _layouts(traces: Sequence[Trace]) -> list[Mapping[str, Any]]:
    return [t.meta.get("parallel_layout") or {} for t in traces]


def _held_text(held: Sequence[Sequence[int]]) -> str:
    return " + ".join(f"[{a}:{b})" for a, b in held)


def who_holds_what_rows(traces: Sequence[Trace]) -> list[list[str]]:
    """[path, class, full shape, split dim, rank 0 slice (shape), rank 1 slice ...] per parallel layer."""
    layouts = _layouts(traces)
    if not layouts or not layouts[0].get("layers"):
        return []
    rows = []
    per_rank = [{layer["path"]: layer for layer in lay.get("layers", [])} for lay in layouts]
    for layer in layouts[0]["layers"]:
        row = [layer["path"], layer["class"], "x".join(map(str, layer["full_shape"])), str(layer["split_dim"])]
        for ranks in per_rank:
            mine = ranks.get(layer["path"])
            row.append("?" if mine is None else f"{_held_text(mine['held'])} {'x'.join(map(str, mine['local_shape']))}")
        rows.append(row)
    return rows


def who_holds_what_svg(traces: Sequence[Trace], *, width: int = 560) -> str:
    """Each parallel weight as a bar along its split dimension, coloured by the rank holding each slice."""
    layouts = _layouts(traces)
    layers = list(layouts[0].get("layers", [])) if layouts else []
    per_rank = [{layer["path"]: layer for layer in lay.get("layers", [])} for lay in layouts]
    row_h, label_w, top = 18, 330, 26
    height = top + row_h * len(layers) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 20}" height="{height}" '
             f'font-family="DejaVu Sans, sans-serif" font-size="11">']
    for rank in range(len(traces)):
        x = label_w + rank * 80
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{RANK_COLOURS[rank % len(RANK_COLOURS)]}"/>'
                     f'<text x="{x + 16}" y="16">rank {rank}</text>')
    for i, layer in enumerate(layers):
        y = top + i * row_h
        full = layer["full_shape"][layer["split_dim"]]
        label = f"{layer['path']} ({'x'.join(map(str, layer['full_shape']))})"
        parts.append(f'<text x="4" y="{y + 12}">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{width}" height="{row_h - 5}" fill="#eee"/>')
        for rank, ranks in enumerate(per_rank):
            mine = ranks.get(layer["path"])
            if mine is None:
                continue
            colour = RANK_COLOURS[rank % len(RANK_COLOURS)]
            for a, b in mine["held"]:
                x0, w = label_w + width * a / full, width * (b - a) / full
                parts.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}">'
                             f'<title>rank {rank}: [{a}:{b}) of {full}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _memory_rows(memory: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for table in memory:
        for r in table["rows"]:
            weights = r["weights_bytes"]
            kv = r["kv_cache_bytes_per_token"]
            rows.append([table["name"], str(r["model_parallel_size"]), f"{r['parameters_per_rank']:,}",
                         _gib(weights["fp32"]), _gib(weights["bf16"]), _gib(kv["bf16"]),
                         _gib(r["image_prompt_kv_bytes"]["bf16"]), r["refused"] or "yes"])
    return rows


MEMORY_HEADERS = ("config", "mp", "parameters per rank", "fp32 weights", "bf16/fp16 weights",
                  "KV cache per token (bf16)", "KV cache of the image slots (bf16)", "splits evenly")
MEMORY_NOTE = ("Weights and KV cache only: activations, the CUDA context and allocator slack come on top "
               "(a floor, not a promise). Replicated parameters (layer norms, EVA's plain linears, the GLU "
               "adapter) are counted on every rank.")


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _summary(traces: Sequence[Trace]) -> str:
    meta = traces[0].meta
    lay = _layouts(traces)[0]
    rep = lay.get("replicated", {}) if lay else {}
    return (f"{len(traces)} ranks, model_parallel_size {meta.get('model_parallel_size')}, "
            f"{meta.get('model_class', '?')} from {meta.get('config', '?')}; "
            f"{len(lay.get('layers', [])) if lay else 0} parallel layers split, "
            f"{rep.get('parameters', 0):,} parameters replicated on every rank")


def render_parallel_text(traces: Sequence[Trace], memory: Sequence[Mapping[str, Any]] = ()) -> str:
    world = len(traces)
    recorded = recorded_note(traces[0])  # collectives and dispatches of summary steps are not counted
    out = [_summary(traces), *([recorded] if recorded else []), "",
           "Who holds what (slice of the split dimension, local shape):"]
    out.append(_text_table(["weight", "class", "full", "dim", *[f"rank {r}" for r in range(world)]],
                           who_holds_what_rows(traces)))
    out += ["", "Collectives per layer (rank 0; bytes this rank contributes):"]
    rows = [[r.layer or "(outside forwards)", r.op, str(r.count), f"{r.bytes:,}", r.shapes]
            for r in collective_rows(traces[0])]
    out.append(_text_table(["layer", "op", "calls", "bytes", "shape"], rows))
    out += ["", "Hook dispatches per rank:"]
    out.append(_text_table(["hook", *[f"rank {r}" for r in range(world)]],
                           [[name, *map(str, counts)] for name, counts in hook_counts(traces).items()]))
    if memory:
        out += ["", "Memory per rank, full-size configs on meta:", _text_table(MEMORY_HEADERS, _memory_rows(memory)),
                MEMORY_NOTE]
    return "\n".join(out) + "\n"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_parallel_html(traces: Sequence[Trace], memory: Sequence[Mapping[str, Any]] = (), *,
                         links: Mapping[str, str] | None = None, diagram_svg: str | None = None) -> str:
    """One self-contained page: summary, who holds what (picture and table), collectives per layer
    per rank, hooks per rank, memory per rank."""
    world = len(traces)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>cogtrace: model parallel</title><style>",
             "body{font:14px/1.4 sans-serif;margin:20px 28px}table{border-collapse:collapse;font-size:12px}"
             "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#eef}"
             "h2{border-bottom:2px solid #ddd}</style></head><body>",
             "<h1>Model parallel run</h1>", f"<p>{html.escape(_summary(traces))}</p>"]
    recorded = recorded_note(traces[0])
    if recorded:
        parts.append(f"<p>{html.escape(recorded)}</p>")
    if links:
        parts.append("<p>" + " · ".join(f"<a href='{html.escape(href)}'>{html.escape(text)}</a>"
                                        for text, href in links.items()) + "</p>")
    parts += ["<h2 id='who'>Who holds what</h2>",
              "<p>Each bar is a weight along the dimension SAT splits (rows for ColumnParallelLinear and "
              "VocabParallelEmbedding, columns for RowParallelLinear); a fused QKV (stride 3) gives each rank a "
              "share of q, of k and of v.</p>", who_holds_what_svg(traces),
              _html_table(["weight", "class", "full", "dim", *[f"rank {r}" for r in range(world)]],
                          who_holds_what_rows(traces)),
              "<h2 id='collectives'>Collectives per layer</h2>"]
    if diagram_svg:
        parts.append(f"<figure>{diagram_svg}</figure>")
    for rank, trace in enumerate(traces):
        rows = [[r.layer or "(outside forwards)", r.op, str(r.count), f"{r.bytes:,}", r.shapes]
                for r in collective_rows(trace)]
        parts += [f"<h3>rank {rank}</h3>", _html_table(["layer", "op", "calls", "bytes", "shape"], rows)]
    parts += ["<h2 id='hooks'>Hook dispatches per rank</h2>",
              _html_table(["hook", *[f"rank {r}" for r in range(world)]],
                          [[name, *map(str, counts)] for name, counts in hook_counts(traces).items()])]
    if memory:
        parts += ["<h2 id='memory'>Memory per rank (full-size configs)</h2>", f"<p>{html.escape(MEMORY_NOTE)}</p>",
                  _html_table(MEMORY_HEADERS, _memory_rows(memory))]
    parts.append("</body></html>\n")
    return "".join(parts)
