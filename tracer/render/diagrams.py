"""Graphviz diagrams of a trace: construction call graph, module tree, CogVLM architecture.

The DOT text is deterministic — nodes are named by call order or module path, never by
event id, object address or time — so it can be compared with golden files and diffed
between two configs. ``to_svg``/``to_png`` run Graphviz's ``dot`` (a system program, installed
by ``scripts/ensure_graphviz.sh``).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterable

from ..errors import UserError
from ..trace import Trace
from .architecture import SYMBOLS, Architecture, Stage, architecture
from .calls import CallNode, call_label, call_tree, hook_changes
from .common import count_text, delta_text, human_count
from .modules import module_rows

__all__ = ["DIAGRAMS", "GraphvizMissing", "architecture_dot", "calls_dot", "dot_source", "modules_dot",
           "to_png", "to_svg"]

DIAGRAMS = ("architecture", "calls", "modules")
FONT = "Helvetica"
# Characters per line of a call-graph label: wider boxes push the graph past a 1280 px page.
LABEL_WIDTH = 64
# One colour per place weights live, the same in every diagram.
COLOURS = {"vision": "#e3f2e1", "adapter": "#fff1d6", "language": "#e1ecf7", "expert": "#fde2e4",
           "call": "#f4f4f4", "mixin": "#fff1d6", "io": "#ffffff"}


class GraphvizMissing(UserError):
    """Graphviz's ``dot`` program is not installed."""


def _esc(text: str) -> str:
    """Escape for a double-quoted DOT string (we write DOT by hand to keep it byte-stable)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _node(name: str, label: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{_esc(v)}"' for k, v in sorted(attrs.items()))
    return f'  "{_esc(name)}" [label="{_esc(label)}"{extra}];'


def _edge(a: str, b: str, **attrs: str) -> str:
    extra = " [" + " ".join(f'{k}="{_esc(v)}"' for k, v in sorted(attrs.items())) + "]" if attrs else ""
    return f'  "{_esc(a)}" -> "{_esc(b)}"{extra};'


def _wrap(text: str, width: int = LABEL_WIDTH, max_lines: int = 6) -> list[str]:
    """A long label as lines broken between words (never inside one), so no box is wider than
    the page; beyond ``max_lines`` the rest is elided with an ellipsis after a whole word."""
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False) or [text]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], lines[max_lines - 1] + " …"]
    return lines


def _graph(name: str, lines: Iterable[str], *, rankdir: str = "TB", extra: str = "") -> str:
    head = [f"digraph {name} {{",
            f'  graph [rankdir={rankdir} fontname="{FONT}" fontsize=11 nodesep=0.25 ranksep=0.35{extra}];',
            f'  node [shape=box style="rounded,filled" fillcolor="{COLOURS["call"]}" fontname="{FONT}" fontsize=10];',
            f'  edge [fontname="{FONT}" fontsize=9 color="#555555"];']
    return "\n".join([*head, *lines, "}"]) + "\n"


# -- construction call graph -----------------------------------------------------------------

def calls_dot(trace: Trace) -> str:
    """Calls as nodes clustered by the class they ran on; edge numbers give the call order."""
    forest = call_tree(trace)
    flat: list[tuple[CallNode, CallNode | None]] = []

    def walk(node: CallNode, parent: CallNode | None) -> None:
        flat.append((node, parent))
        for child in node.children:
            walk(child, node)

    for node in forest:
        walk(node, None)
    clusters: dict[str, list[str]] = {}
    for node, _ in flat:
        e = node.event
        owner = str(e.data.get("owner") or "") or "module-level functions"
        d = e.data
        lines = _wrap(f"{node.order}. " + (call_label(e, with_args=False) if d.get("function") not in
                                           ("add_mixin", "del_mixin") else call_label(e, short=True)))
        delta = delta_text(d.get("params_before"), d.get("params_after"))
        if delta:
            lines.append(delta)
        lines += [f"hook {c}" for c in hook_changes(d.get("hooks_before"), d.get("hooks_after"))]
        if d.get("result") not in (None, "", "None") and d.get("function") not in ("add_mixin", "del_mixin"):
            lines += _wrap(f"→ {d['result']}", max_lines=3)
        mixin = d.get("function") in ("add_mixin", "del_mixin")
        attrs = {"fillcolor": COLOURS["mixin"] if mixin else COLOURS["call"]}
        if e.source is not None:
            attrs["tooltip"] = str(e.source)
        clusters.setdefault(owner, []).append(_node(f"c{node.order}", "\n".join(lines), **attrs))
    body: list[str] = []
    for i, owner in enumerate(sorted(clusters)):
        body += [f"  subgraph cluster_{i} {{", f'    label="{_esc(owner)}"; style="rounded,dashed"; color="#999999";']
        body += ["  " + line for line in clusters[owner]]
        body.append("  }")
    # Top-level calls hang from one start node, so the whole sequence reads as one tree.
    start = str(trace.meta.get("command") or "traced program")
    body.append(_node("start", start, shape="plaintext", fillcolor="none"))
    # Emitted last-call-first: with rankdir=LR Graphviz stacks siblings bottom-up, so this
    # puts each call's children top to bottom in call order.
    for node, parent in reversed(flat):
        body.append(_edge("start" if parent is None else f"c{parent.order}", f"c{node.order}", label=str(node.order)))
    if not flat:
        body.append(_node("empty", "no construction events in this trace"))
    # ordering=out keeps each call's children top to bottom in call order.
    return _graph("construction_calls", body, rankdir="LR", extra=" ordering=out")


# -- module tree -----------------------------------------------------------------------------

def _place(path: str) -> str:
    if "vit_model" in path:
        return "vision"
    if path.startswith("mixins.eva"):
        return "adapter"
    if path.startswith("mixins."):
        return "expert"
    return "language"


def modules_dot(trace: Trace, *, max_depth: int | None = None) -> str:
    """The folded module tree (left to right), each box with its class, parameters and shapes."""
    rows = module_rows(trace, max_depth=max_depth)
    body: list[str] = []
    stack: list[str] = []
    for i, r in enumerate(rows):
        name = f"m{i}"
        lines = [r.name, r.class_name]
        if r.total:
            lines.append(f"{count_text(r.total)} params")
        if r.calls:
            lines.append(f"{r.inputs} → {r.outputs}")
        body.append(_node(name, "\n".join(lines), fillcolor=COLOURS[_place(r.path)], tooltip=r.path or r.class_name))
        del stack[r.depth:]
        if stack:
            body.append(_edge(stack[-1], name))
        stack.append(name)
    if not rows:
        body.append(_node("empty", "no module tree in this trace"))
    return _graph("module_tree", body, rankdir="LR", extra=" ordering=out")


# -- architecture ------------------------------------------------------------------------------

def _stage_label(s: Stage) -> str:
    lines = [s.title]
    if s.detail:
        lines.append(s.detail)
    if s.params:
        lines.append(f"{count_text(s.params)} params" + (f" in {s.where}" if s.where else ""))
    elif s.where:
        lines.append(s.where)
    return "\n".join(lines)


def architecture_dot(trace: Trace, arch: Architecture | None = None) -> str:
    """CogVLM's data flow with this trace's shapes on the edges."""
    a = arch or architecture(trace)
    st = a.stages
    body: list[str] = []

    def box(key: str, place: str, **attrs: str) -> None:
        body.append(_node(key, _stage_label(st[key]), fillcolor=COLOURS[place], **attrs))

    body.append(_node("image", f"image\n{st['image'].shape_out}", shape="note", fillcolor=COLOURS["io"]))
    tower = a.vision_path or "?"
    body += ["  subgraph cluster_vision {", f'    label="vision tower: {_esc(tower)}";',
             '    style="rounded"; color="#7aa874";']
    for key in ("patch", "cls", "eva", "drop"):
        box(key, "vision")
    body.append("  }")
    box("glu", "adapter")
    box("frame", "adapter")
    body.append(_node("ids", "token ids\n" + st["text"].shape_in, shape="note", fillcolor=COLOURS["io"]))
    box("text", "language")
    vt, lt = a.vision_tokens, a.language_tokens
    split = f"vision expert: {vt} tokens (boi + image)\\nlanguage expert: {lt} tokens" if vt is not None else ""
    lm = st["lm"]
    lm_label = f"{lm.title}: {lm.where}" + (f" ({count_text(lm.params)} params in the layers)" if lm.params else "")
    body += ["  subgraph cluster_lm {", f'    label="{_esc(lm_label)}";', '    style="rounded"; color="#5b8cc0";']
    body.append(_node("lm_in", "input RMSNorm", fillcolor=COLOURS["language"]))
    body.append(_node("core", f"rotary self-attention over all {a.sequence_length or ('S' if a.symbolic else '?')} positions\n"
                      "(image tokens share one rotary position id)", fillcolor=COLOURS["language"]))
    body.append(_node("post", "output projections (vision_dense / dense) + residual\npost-attention RMSNorm",
                      fillcolor=COLOURS["language"]))
    for key, place in (("attn_vis", "expert"), ("attn_lang", "language"), ("mlp_vis", "expert"),
                       ("mlp_lang", "language")):
        box(key, place)
    body.append(_node("lm_out", "merge by vision_expert_mask + residual", fillcolor=COLOURS["language"]))
    if split:
        body.append(f'    "split" [label="{split}" shape=plaintext fillcolor="none"];')
    body.append("  }")
    box("head", "language")
    body.append(_node("logits", f"logits\n{st['head'].shape_out}", shape="note", fillcolor=COLOURS["io"]))

    def flow(a_: str, b_: str, label: str, **attrs: str) -> None:
        body.append(_edge(a_, b_, label=label, **attrs))

    flow("image", "patch", st["patch"].shape_in)
    flow("patch", "cls", st["patch"].shape_out)
    flow("cls", "eva", st["cls"].shape_out)
    flow("eva", "drop", st["eva"].shape_out)
    flow("drop", "glu", st["drop"].shape_out)
    flow("glu", "frame", st["glu"].shape_out)
    flow("ids", "text", st["text"].shape_in)
    flow("frame", "lm_in", st["frame"].shape_out)
    flow("text", "frame", st["text"].shape_out, style="dashed")
    flow("lm_in", "attn_vis", st["attn_vis"].shape_in)
    flow("lm_in", "attn_lang", st["attn_lang"].shape_in)
    flow("attn_vis", "core", st["attn_vis"].shape_out + " QKV")
    flow("attn_lang", "core", st["attn_lang"].shape_out + " QKV")
    flow("core", "post", st["lm"].shape_out)
    flow("post", "mlp_vis", st["mlp_vis"].shape_in)
    flow("post", "mlp_lang", st["mlp_lang"].shape_in)
    flow("mlp_vis", "lm_out", st["mlp_vis"].shape_out + " inner")
    flow("mlp_lang", "lm_out", st["mlp_lang"].shape_out + " inner")
    flow("lm_out", "head", st["lm"].shape_out)
    flow("head", "logits", st["head"].shape_out)
    if split:
        body.append('  "split" -> "lm_in" [style=invis];')
    total = f"{a.model_class}: {count_text(a.total_parameters)} parameters ({human_count(a.total_parameters)})"
    if a.symbolic:
        total += f"\nno forward in this trace: widths from the weights; {SYMBOLS}"
    body.append(f'  label="{_esc(total)}"; labelloc=t; fontsize=13;')
    return _graph("cogvlm_architecture", body)


def dot_source(trace: Trace, diagram: str = "architecture") -> str:
    if diagram == "architecture":
        return architecture_dot(trace)
    if diagram == "calls":
        return calls_dot(trace)
    if diagram == "modules":
        return modules_dot(trace)
    raise ValueError(f"diagram {diagram!r}: expected one of {list(DIAGRAMS)}")


# -- running dot -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _pipe(dot: str, fmt: str) -> bytes:
    """Run ``dot``; the same graph asked for twice (report.html and its .svg files) runs once."""
    import graphviz

    try:
        return graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise GraphvizMissing("Graphviz 'dot' not found: install it (Debian/Ubuntu: apt-get install graphviz; "
                              "or run scripts/ensure_graphviz.sh)") from e


def to_svg(dot: str) -> bytes:
    return _pipe(dot, "svg")


def to_png(dot: str, *, dpi: int = 96) -> bytes:
    """PNG at ``dpi`` (96 keeps the full module tree of a big model under a few MB)."""
    return _pipe(dot.replace("  graph [", f"  graph [dpi={dpi} ", 1), "png")
