"""Graphviz diagrams of a trace: construction call graph, module tree, and the DOT helpers views share.

The DOT text is deterministic — nodes are named by call order or module path, never by
event id, object address or time — so it can be compared with golden files and diffed
between two configs. ``to_svg``/``to_png`` run Graphviz's ``dot`` (a system program, installed
by ``scripts/ensure_graphviz.sh``).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Iterable

from ..errors import UserError
from ..schema import Trace
from .calls import CallNode, call_label, call_tree, hook_changes
from .common import count_text, delta_text
from .modules import module_rows

__all__ = ["COLOURS", "DIAGRAMS", "GraphvizMissing", "calls_dot", "dot_source", "edge", "esc", "graph", "modules_dot",
           "node", "to_png", "to_svg"]

DIAGRAMS = ("architecture", "calls", "modules")
FONT = "Helvetica"
# Characters per line of a call-graph label: wider boxes push the graph past a 1280 px page.
LABEL_WIDTH = 64
# One colour per place weights live, the same in every diagram.
COLOURS = {"vision": "#e3f2e1", "adapter": "#fff1d6", "language": "#e1ecf7", "expert": "#fde2e4",
           "call": "#f4f4f4", "mixin": "#fff1d6", "io": "#ffffff"}
Place = Callable[[str], str]  # module path -> a COLOURS key


class GraphvizMissing(UserError):
    """Graphviz's ``dot`` program is not installed."""


def esc(text: str) -> str:
    """Escape for a double-quoted DOT string (we write DOT by hand to keep it byte-stable)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def node(name: str, label: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{esc(v)}"' for k, v in sorted(attrs.items()))
    return f'  "{esc(name)}" [label="{esc(label)}"{extra}];'


def edge(a: str, b: str, **attrs: str) -> str:
    extra = " [" + " ".join(f'{k}="{esc(v)}"' for k, v in sorted(attrs.items())) + "]" if attrs else ""
    return f'  "{esc(a)}" -> "{esc(b)}"{extra};'


def _wrap(text: str, width: int = LABEL_WIDTH, max_lines: int = 6) -> list[str]:
    """A long label as lines broken between words (never inside one), so no box is wider than
    the page; beyond ``max_lines`` the rest is elided with an ellipsis after a whole word."""
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False) or [text]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], lines[max_lines - 1] + " …"]
    return lines


def graph(name: str, lines: Iterable[str], *, rankdir: str = "TB", extra: str = "") -> str:
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

    def walk(call: CallNode, parent: CallNode | None) -> None:
        flat.append((call, parent))
        for child in call.children:
            walk(child, call)

    for call in forest:
        walk(call, None)
    clusters: dict[str, list[str]] = {}
    for call, _ in flat:
        e = call.event
        owner = str(e.data.get("owner") or "") or "module-level functions"
        d = e.data
        lines = _wrap(f"{call.order}. " + (call_label(e, with_args=False) if d.get("function") not in
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
        clusters.setdefault(owner, []).append(node(f"c{call.order}", "\n".join(lines), **attrs))
    body: list[str] = []
    for i, owner in enumerate(sorted(clusters)):
        body += [f"  subgraph cluster_{i} {{", f'    label="{esc(owner)}"; style="rounded,dashed"; color="#999999";']
        body += ["  " + line for line in clusters[owner]]
        body.append("  }")
    # Top-level calls hang from one start call, so the whole sequence reads as one tree.
    start = str(trace.meta.get("command") or "traced program")
    body.append(node("start", start, shape="plaintext", fillcolor="none"))
    # Emitted last-call-first: with rankdir=LR Graphviz stacks siblings bottom-up, so this
    # puts each call's children top to bottom in call order.
    for call, parent in reversed(flat):
        body.append(edge("start" if parent is None else f"c{parent.order}", f"c{call.order}", label=str(call.order)))
    if not flat:
        body.append(node("empty", "no construction events in this trace"))
    # ordering=out keeps each call's children top to bottom in call order.
    return graph("construction_calls", body, rankdir="LR", extra=" ordering=out")


# -- module tree -----------------------------------------------------------------------------

def generic_place(path: str) -> str:
    """Any SAT model: weights a mixin owns are coloured apart from the base model's."""
    return "mixin" if path.startswith("mixins.") else "language"


def modules_dot(trace: Trace, *, max_depth: int | None = None, place: Place = generic_place) -> str:
    """The folded module tree (left to right), each box with its class, parameters and shapes;
    ``place`` colours a box by where its weights live (a model's views may pass their own)."""
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
        body.append(node(name, "\n".join(lines), fillcolor=COLOURS[place(r.path)], tooltip=r.path or r.class_name))
        del stack[r.depth:]
        if stack:
            body.append(edge(stack[-1], name))
        stack.append(name)
    if not rows:
        body.append(node("empty", "no module tree in this trace"))
    return graph("module_tree", body, rankdir="LR", extra=" ordering=out")


def dot_source(trace: Trace, diagram: str = "architecture") -> str:
    """The DOT text of one diagram, drawn by the view the registry gives this trace."""
    from .registry import views_for

    if diagram not in DIAGRAMS:
        raise ValueError(f"diagram {diagram!r}: expected one of {list(DIAGRAMS)}")
    make_dot = views_for(trace)[diagram].dot
    assert make_dot is not None  # every name in DIAGRAMS is a dot view
    return make_dot(trace)


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
