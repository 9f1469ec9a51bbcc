"""The explorer: one self-contained, interactive HTML page for a trace (``report.html``) or for
two traces side by side (``cogtrace diff --format html``).

The page is plain HTML that reads well without JavaScript (and prints unfolded); a small
vanilla script (``explorer.js``, inlined with ``explorer.css``) adds folding, search, a detail
panel, zoom and pan, token hover and keyboard navigation. Everything is inline — the Graphviz
diagrams as inline SVG so that their nodes can link to rows — and the only links are in-page
anchors and ``vscode://file/…`` source links, so the file works from ``file://`` offline.

What the script reads: ``<script type="application/json" id="cogtrace-data">`` holds
``{"details": {ref: {...}}}``, the detail panel's facts per row, keyed ``e:ID`` (an event),
``m:PATH`` (a module) or, in a diff, ``a:ID`` / ``b:ID``. Rows carry ``data-ref``, tree rows
``data-search`` (the text a search matches: name, mixin, hooks, shapes), module rows
``data-path`` and call rows ``data-order`` (the numbers of the call-graph nodes ``cN``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..diff import SECTIONS, TraceDiff
from ..schema import Event, ModuleNode, Trace
from .calls import CallNode, call_label, call_tree, hook_changes
from .common import (
    count_text,
    delta_text,
    duration_text,
    has_token_split,
    human_count,
    recorded_note,
    shapes_text,
    source_text,
    vscode_link,
)

__all__ = ["inline_svg", "render_diff_html", "render_explorer", "token_cells"]

CALL_OPEN_DEPTH = 4  # construction calls deeper than this start folded
MODULE_OPEN_DEPTH = 3  # module-tree nodes deeper than this start folded; repeated layers always do
MAX_DISPATCH_ROWS = 3000  # hook dispatches listed one by one (a long generation can record many more)
MASK_CLASSES = ("m0", "m1", "m2")  # how the first three masks of a token layout are drawn


@cache
def _asset(name: str) -> str:
    return resources.files("tracer.render").joinpath(name).read_text(encoding="utf-8")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_SVG_PROLOGUE = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", re.S)
_ROOT_SIZE = re.compile(r'(<svg\b[^>]*?)\s(?:width|height)="[^"]*"', re.S)


def inline_svg(svg: bytes | str) -> str:
    """Graphviz's SVG file as an element for an HTML page: no prologue, no fixed size (the
    page sizes it through its viewBox)."""
    text = svg.decode("utf-8") if isinstance(svg, bytes) else svg
    text = _SVG_PROLOGUE.sub("", text).strip()
    for _ in range(2):  # width, then height
        text = _ROOT_SIZE.sub(r"\1", text, count=1)
    return text


def _json_script(data: Any) -> str:
    # '</' would end the script element early; the JSON parser reads '<\/' as '</'.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="cogtrace-data">{text}</script>'


def _page(title: str, header: str, nav: Sequence[tuple[str, str]], body: str, data: Any) -> str:
    links = "".join(f'<a href="#{key}">{_e(name)}</a>' for key, name in nav)
    search = ('<span class="search"><input type="search" id="search" placeholder="search name, mixin, hook or shape  (/)"'
              ' aria-label="search"><span class="hits" id="hits"></span></span>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{_asset('explorer.css')}</style></head><body>{header}<nav>{links}{search}</nav>"
            f'<div class="layout"><main>{body}</main><aside id="detail" aria-live="polite"><p class="empty">'
            "Click a call, module, hook dispatch or diagram node to see its details here. Keys: / search, "
            "↑ ↓ move, → ← unfold and fold, Esc clears the search.</p></aside></div>"
            '<div id="tip"></div><footer><p class="note" style="padding:0 24px 20px">Written by cogtrace from saved '
            "traces; self-contained (no network access needed).</p></footer>"
            f"{_json_script(data)}<script>{_asset('explorer.js')}</script></body></html>\n")


def _source(loc: Any, roots: Sequence[str]) -> dict[str, str] | None:
    if loc is None:
        return None
    out = {"text": source_text(loc)}
    link = vscode_link(loc, roots)
    if link:
        out["vscode"] = link
    return out


def _source_tag(loc: Any, roots: Sequence[str]) -> str:
    src = _source(loc, roots)
    if src is None:
        return ""
    inner = (f'<a href="{_e(src["vscode"])}" title="open in VS Code">{_e(src["text"])}</a>' if "vscode" in src
             else _e(src["text"]))
    return f'<span class="tag">{inner}</span>'


def _diagram(render: Callable[[], str], alt: str) -> str:
    """A Graphviz diagram that fits its box, with zoom and pan; a missing ``dot`` is a note."""
    from . import diagrams

    try:
        svg = diagrams.to_svg(render())
    except diagrams.GraphvizMissing as e:
        return f'<p class="note">{_e(alt)}: not drawn ({_e(e)})</p>'
    return f'<div class="diagram" role="img" aria-label="{_e(alt)}" tabindex="0">{inline_svg(svg)}</div>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (),
           row_attrs: Sequence[str] | None = None, shape_cols: Sequence[int] = (), raw: Sequence[int] = ()) -> str:
    """A filterable table (the search hides rows that do not match); cells escaped unless raw."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r, row in enumerate(rows):
        attrs = row_attrs[r] if row_attrs else ""
        cells = []
        for i, cell in enumerate(row):
            cls = "num" if i in numeric else "shape" if i in shape_cols else ""
            cells.append(f'<td{f" class={cls}" if cls else ""}>{cell if i in raw else _e(cell)}</td>')
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return f'<table class="filterable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


# -- details (the panel's facts) --------------------------------------------------------------------

def _call_detail(e: Event, roots: Sequence[str], timings: bool) -> dict[str, Any]:
    d = e.data
    before, after = d.get("params_before"), d.get("params_after")
    params = ""
    if isinstance(before, int) and isinstance(after, int):
        params = f"{count_text(before)} → {count_text(after)} ({delta_text(before, after) or 'no change'})"
    elif isinstance(d.get("params"), int):
        params = count_text(d["params"])
    out: dict[str, Any] = {
        "title": call_label(e, short=True), "kind": "construction call" + (f" on {d['owner']}" if d.get("owner") else ""),
        "source": _source(e.source, roots), "defined_at": source_text(d["defined_at"]) if d.get("defined_at") else "",
        "args": d.get("args") or {}, "namespaces": d.get("namespaces") or {}, "result": d.get("result") or "",
        "params": params, "hooks_before": d.get("hooks_before"), "hooks_after": d.get("hooks_after"),
        "error": e.error or "",
    }
    if timings:
        out["time"] = duration_text(e.duration_ns)
    return out


def _hook_detail(e: Event, roots: Sequence[str]) -> dict[str, Any]:
    d = e.data
    return {
        "title": f"{d.get('hook', e.name)} @ {d.get('layer_path') or d.get('model_path') or 'model'}",
        "kind": "SAT hook dispatch" + (f" (layer {d['layer_id']})" if d.get("layer_id") is not None else ""),
        "source": _source(e.source, roots), "served_by": str(d.get("origin") or d.get("served_by") or ""),
        "mixin_class": d.get("mixin_class") or "", "layer_path": d.get("layer_path") or "",
        "weights": list(d.get("weights") or []), "inputs": shapes_text(d.get("inputs"), limit=8),
        "outputs": shapes_text(d.get("outputs"), limit=8),
        "branch": d.get("branch") if isinstance(d.get("branch"), Mapping) else None, "error": e.error or "",
    }


def _module_detail(node: ModuleNode, first: Event | None, calls: int, dispatches: list[str],
                   roots: Sequence[str]) -> dict[str, Any]:
    data = first.data if first is not None else {}
    kwargs = data.get("kwargs") or {}
    return {
        "title": node.path or node.class_name, "kind": f"module {node.class_name}",
        "source": _source(first.source if first is not None else None, roots),
        "params": f"{count_text(node.parameters)} own, {count_text(node.total)} with children",
        "param_shapes": {k: "[" + ", ".join(map(str, v)) + "]" for k, v in node.param_shapes.items()},
        "calls": str(calls) if calls else "", "inputs": shapes_text(data.get("inputs"), limit=8),
        "outputs": shapes_text(data.get("outputs"), limit=8),
        "kwargs": {k: shapes_text([v]) for k, v in kwargs.items() if shapes_text([v])},
        "dispatches": dispatches,
    }


# -- the construction call tree ---------------------------------------------------------------------

def _call_li(node: CallNode, depth: int, roots: Sequence[str], timings: bool) -> str:
    e = node.event
    d = e.data
    tags = []
    delta = delta_text(d.get("params_before"), d.get("params_after"))
    if delta:
        tags.append(f'<span class="tag delta">{_e(delta)}</span>')
    if d.get("result") not in (None, "", "None") and d.get("function") not in ("add_mixin", "del_mixin"):
        tags.append(f'<span class="tag">→ {_e(d["result"])}</span>')
    changes = hook_changes(d.get("hooks_before"), d.get("hooks_after"))
    tags += [f'<span class="tag hook">hook {_e(c)}</span>' for c in changes]
    tags.append(_source_tag(e.source, roots))
    if timings:
        tags.append(f'<span class="tag">{_e(duration_text(e.duration_ns))}</span>')
    if e.error:
        tags.append(f'<span class="tag err">raised {_e(e.error)}</span>')
    search = " ".join(str(x) for x in (call_label(e), d.get("owner") or "", d.get("mixin") or "",
                                       d.get("mixin_class") or "", d.get("model_path") or "", *changes))
    row = (f'<span class="row" data-ref="e:{e.id}" data-order="{node.order}" data-search="{_e(search)}">'
           f'<span class="twisty"></span><span class="name">{node.order}. {_e(call_label(e))}</span>'
           f'{"".join(tags)}</span>')
    if not node.children:
        return f'<li class="leaf">{row}</li>'
    fold = depth >= CALL_OPEN_DEPTH
    inner = "".join(_call_li(c, depth + 1, roots, timings) for c in node.children)
    return f'<li data-fold="{int(fold)}"{" class=collapsed" if fold else ""}>{row}<ul>{inner}</ul></li>'


# -- the module tree --------------------------------------------------------------------------------

@dataclass
class _Modules:
    trace: Trace
    nodes: dict[str, ModuleNode] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    first: dict[str, Event] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    served: dict[str, dict[str, str]] = field(default_factory=dict)  # module path -> {hook: who}
    _sig: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in self.trace.modules:
            self.nodes[m.path] = m
            if m.path:
                self.children.setdefault(m.path.rpartition(".")[0], []).append(m.path)
        for e in self.trace.events:
            if e.category == "module":
                path = str(e.data.get("path", ""))
                self.first.setdefault(path, e)
                self.calls[path] = self.calls.get(path, 0) + 1
            elif e.category == "hook" and e.data.get("layer_path"):
                who = str(e.data.get("origin") or e.data.get("served_by") or "")
                if e.data.get("mixin_class"):
                    who += f" ({e.data['mixin_class']})"
                self.served.setdefault(str(e.data["layer_path"]), {}).setdefault(str(e.data.get("hook", e.name)), who)

    def signature(self, path: str) -> Any:
        """What must agree for numbered siblings (layers.0, layers.1, …) to fold into one group."""
        if path not in self._sig:
            n = self.nodes[path]
            kids = tuple((k.rpartition(".")[2], self.signature(k)) for k in self.children.get(path, []))
            self._sig[path] = (n.class_name, tuple(sorted(n.param_shapes.items())), kids)
        return self._sig[path]

    def groups(self, path: str) -> list[list[str]]:
        out: list[list[str]] = []
        for child in self.children.get(path, []):
            leaf = child.rpartition(".")[2]
            last = out[-1] if out else None
            if (last is not None and leaf.isdigit() and last[0].rpartition(".")[2].isdigit()
                    and self.signature(child) == self.signature(last[0])):
                last.append(child)
            else:
                out.append([child])
        return out

    def dispatches(self, path: str) -> list[str]:
        return [f"{hook} ← {who}" for hook, who in self.served.get(path, {}).items()]


def _module_li(mods: _Modules, path: str, depth: int, details: dict[str, Any], roots: Sequence[str]) -> str:
    node = mods.nodes[path]
    first = mods.first.get(path)
    ref = f"m:{path}"
    details[ref] = _module_detail(node, first, mods.calls.get(path, 0), mods.dispatches(path), roots)
    name = path.rpartition(".")[2] if path else node.class_name
    tags = [f'<span class="tag cls">{_e(node.class_name)}</span>']
    if node.total:
        tags.append(f'<span class="tag">{_e(human_count(node.total))}</span>')
    shapes = ""
    if first is not None:
        shapes = f"{shapes_text(first.data.get('inputs'))} → {shapes_text(first.data.get('outputs'))}"
        tags.append(f'<span class="tag shape">{_e(shapes)}</span>')
    hooks = mods.dispatches(path)
    tags += [f'<span class="tag hook">{_e(h)}</span>' for h in hooks]
    search = " ".join([path or node.class_name, node.class_name, shapes, *hooks])
    row = (f'<span class="row" data-ref="{_e(ref)}" data-path="{_e(path)}" data-search="{_e(search)}">'
           f'<span class="twisty"></span><span class="name">{_e(name)}</span>{"".join(tags)}</span>')
    groups = mods.groups(path)
    if not groups:
        return f'<li class="leaf">{row}</li>'
    inner = []
    for members in groups:
        if len(members) == 1:
            inner.append(_module_li(mods, members[0], depth + 1, details, roots))
            continue
        first_leaf, last_leaf = members[0].rpartition(".")[2], members[-1].rpartition(".")[2]
        parent_name = path.rpartition(".")[2] if path else ""
        label = f"{first_leaf}–{last_leaf} ×{len(members)}"
        group_row = (f'<span class="row" data-search="{_e(" ".join(members))}"><span class="twisty"></span>'
                     f'<span class="name">{_e(label)}</span><span class="tag group">{len(members)} identical '
                     f'{_e(parent_name or "siblings")}: same class, parameter shapes and children</span></span>')
        kids = "".join(_module_li(mods, m, depth + 2, details, roots) for m in members)
        inner.append(f'<li data-fold="1" class="group collapsed">{group_row}<ul>{kids}</ul></li>')
    fold = depth >= MODULE_OPEN_DEPTH
    return f'<li data-fold="{int(fold)}"{" class=collapsed" if fold else ""}>{row}<ul>{"".join(inner)}</ul></li>'


# -- hook dispatches ------------------------------------------------------------------------------

def _dispatch_tree(trace: Trace, details: dict[str, Any], roots: Sequence[str]) -> str:
    by_id = trace.by_id()
    groups: dict[str, list[Event]] = {}
    for e in trace.events:
        if e.category != "hook":
            continue
        step, parent = "outside generation", e.parent
        while parent is not None:
            p = by_id.get(parent)
            if p is None:
                break
            if p.category == "generation" and p.data.get("phase") != "call":
                step = p.name
                break
            parent = p.parent
        groups.setdefault(step, []).append(e)
    shown = 0
    items = []
    for n, (step, events) in enumerate(groups.items()):
        rows = []
        for e in events:
            if shown >= MAX_DISPATCH_ROWS:
                break
            shown += 1
            d = e.data
            details[f"e:{e.id}"] = _hook_detail(e, roots)
            who = str(d.get("origin") or d.get("served_by") or "")
            shapes = f"{shapes_text(d.get('inputs'))} → {shapes_text(d.get('outputs'))}"
            search = " ".join(str(x) for x in (d.get("hook", e.name), d.get("layer_path") or "", who,
                                               d.get("mixin_class") or "", shapes))
            rows.append(f'<li class="leaf"><span class="row" data-ref="e:{e.id}" data-search="{_e(search)}">'
                        f'<span class="twisty"></span><span class="name">{_e(d.get("hook", e.name))}</span>'
                        f'<span class="tag">{_e(d.get("layer_path") or d.get("model_path") or "")}</span>'
                        f'<span class="tag hook">← {_e(who)}</span>'
                        f'<span class="tag cls">{_e(d.get("mixin_class") or "")}</span>'
                        f'<span class="tag shape">{_e(shapes)}</span></span></li>')
        fold = n > 0
        head = (f'<span class="row" data-search="{_e(step)}"><span class="twisty"></span><span class="name">'
                f'{_e(step)}</span><span class="tag">{len(events)} dispatches</span></span>')
        items.append(f'<li data-fold="{int(fold)}"{" class=collapsed" if fold else ""}>{head}<ul>{"".join(rows)}</ul></li>')
    total = sum(len(v) for v in groups.values())
    note = (f'<p class="note">First {MAX_DISPATCH_ROWS:,} of {total:,} dispatches listed.</p>'
            if total > MAX_DISPATCH_ROWS else "")
    if not items:
        return '<p class="note">No hook dispatches recorded.</p>'
    return note + _tree_toolbar("hooktree") + f'<ul class="tree" id="hooktree">{"".join(items)}</ul>'


def _tree_toolbar(target: str) -> str:
    return (f'<div class="toolbar"><button data-tree-action="expand" data-target="{target}">unfold all</button>'
            f'<button data-tree-action="collapse" data-target="{target}">fold all</button>'
            f'<button data-tree-action="default" data-target="{target}">default folding</button></div>')


# -- token layout --------------------------------------------------------------------------------

_NOT_MASKS = ("tokens", "pieces", "position_ids")


def token_cells(layout: Mapping[str, Any]) -> str:
    """The input sequence as hoverable cells: runs of identical positions fold into one cell
    (``<image> ×1225``); each cell's tip gives its positions, piece, token id, masks and
    position ids. Any 0/1 list of the layout's length counts as a mask."""
    tokens = [int(t) for t in layout.get("tokens") or []]
    n = len(tokens)
    pieces = [str(p) for p in layout.get("pieces") or [""] * n]
    positions = [int(p) for p in layout.get("position_ids") or range(n)]
    masks = [k for k, v in layout.items() if k not in _NOT_MASKS and isinstance(v, list) and len(v) == n]
    rows = [(tokens[i], pieces[i], tuple(int(layout[m][i]) for m in masks)) for i in range(n)]
    cells = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and rows[j + 1] == rows[i]:
            j += 1
        if j - i + 1 < 3:
            j = i
        token, piece, flags = rows[i]
        span = f"{i}" if j == i else f"{i}–{j} (×{j - i + 1})"
        pos = f"{positions[i]}" if positions[i] == positions[j] else f"{positions[i]}–{positions[j]}"
        tip = (f"position {span}\npiece {piece!r}  token id {token}\n"
               + "\n".join(f"{m} = {f}" for m, f in zip(masks, flags, strict=True)) + f"\nposition id {pos}")
        classes = " ".join(c for c, f in zip(MASK_CLASSES, flags, strict=False) if f)
        count = f'<span class="n">×{j - i + 1}</span>' if j > i else f'<span class="n">{i}</span>'
        cells.append(f'<span class="tok {classes}" data-tip="{_e(tip)}" data-search="{_e(piece)} {token}">'
                     f"{_e(piece)}{count}</span>")
        i = j + 1
    legend = "".join(f'<span><span class="tok {c}">&nbsp;</span> {_e(m)}</span>'
                     for c, m in zip(MASK_CLASSES, masks, strict=False))
    return f'<div class="legend">{legend}</div><div class="strip">{"".join(cells)}</div>'


# -- the page of one trace ---------------------------------------------------------------------------

def _header(trace: Trace) -> tuple[str, str]:
    meta = trace.meta
    root = next((m for m in trace.modules if m.path == ""), None)
    facts = []
    if root is not None:
        facts.append(f"{_e(root.class_name)}: {count_text(root.total)} parameters ({human_count(root.total)})")
    for key in ("config", "device", "command"):
        if meta.get(key):
            facts.append(f"{key}: <code>{_e(meta[key])}</code>")
    versions = [f"{name} {meta[key]}" for key, name in (("sat", "SAT"), ("torch", "torch"), ("python", "Python"))
                if meta.get(key)]
    if versions:
        facts.append(_e(", ".join(versions)))
    counts: dict[str, int] = {}
    for e in trace.events:
        counts[e.category] = counts.get(e.category, 0) + 1
    facts.append("events: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
    title = f"cogtrace report — {meta.get('config') or (root.class_name if root else 'trace')}"
    return f"<header><h1>{_e(title)}</h1><div class=facts>{' · '.join(facts)}</div></header>", title


def render_explorer(trace: Trace, *, timings: bool = True, source_roots: Sequence[str] = ()) -> str:
    """The report of one trace as an interactive, self-contained HTML page."""
    from .hooks import hook_rows, mixin_changes
    from .modules import check_totals
    from .registry import views_for
    from .steps import maybe_count, step_rows, summary_note

    views = views_for(trace)  # the generic views, with the model adapter's over them
    roots = list(source_roots)
    header, title = _header(trace)
    details: dict[str, Any] = {}
    sections: list[tuple[str, str, str]] = []
    if trace.exception:
        sections.append(("exception", "Exception", f'<pre class="err">{_e(trace.exception)}</pre>'))

    arch = views["architecture"]
    if arch.dot is not None:
        arch_dot = arch.dot
        sections.append(("architecture", "Architecture",
                         f'<p class="note">{_e(arch.caption)}. Drag to pan, Ctrl+wheel or the buttons to zoom; '
                         "click a box to find its module.</p>" + _diagram(lambda: arch_dot(trace), "architecture diagram")))

    layout = trace.meta.get("token_layout")
    tokens = views.get("tokens")
    if isinstance(layout, Mapping) and layout.get("tokens"):
        text = ""
        if tokens is not None and tokens.text is not None:
            try:
                text = ("<details><summary>as text</summary><pre>" + _e(tokens.render_text(trace)) + "</pre></details>")
            except tokens.errors:
                text = ""
        sections.append(("tokens", "Token layout",
                         '<p class="note">The input sequence of the chat turn, runs folded; hover a cell for its '
                         "positions, piece, masks and position ids, exactly as the model received them.</p>"
                         + token_cells(layout) + text))

    forest = call_tree(trace)
    for node in _walk(forest):
        details[f"e:{node.event.id}"] = _call_detail(node.event, roots, timings)
    calls = "".join(_call_li(n, 0, roots, timings) for n in forest)
    calls_view = views["calls"]
    graph = ""
    if calls_view.dot is not None and forest:
        calls_dot = calls_view.dot
        graph = ("<h3>Call graph</h3><p class=\"note\">Clustered by class, edges numbered in call order; click a "
                 "node for its call.</p>" + _diagram(lambda: calls_dot(trace), "construction call graph"))
    sections.append(("calls", "Construction calls",
                     '<p class="note">SAT\'s construction API in call order, nested as it ran. Click a call for its '
                     "arguments, parameter delta, hook table before and after, and source.</p>"
                     + (_tree_toolbar("calltree") + f'<ul class="tree" id="calltree">{calls}</ul>' + graph
                        if calls else '<p class="note">No construction events.</p>')))

    mods = _Modules(trace)
    problems = check_totals(trace)
    totals = ("parameter totals add up" if not problems else f"{len(problems)} totals do not add up: "
              + "; ".join(problems[:3]))
    module_tree = _module_li(mods, "", 0, details, roots) if "" in mods.nodes else ""
    modules_view = views["modules"]
    module_graph = ""
    if modules_view.dot is not None and module_tree:
        modules_dot = modules_view.dot
        module_graph = "<h3>Module tree diagram</h3>" + _diagram(lambda: modules_dot(trace), "module tree")
    sections.append(("modules", "Module tree",
                     f'<p class="note">Where the weights live, with each module\'s first-call shapes and the hooks '
                     f"that ran for it; identical numbered siblings are folded (unfold to see each). Check: "
                     f"{_e(totals)}.</p>"
                     + (_tree_toolbar("moduletree") + f'<ul class="tree" id="moduletree">{module_tree}</ul>'
                        + module_graph if module_tree else '<p class="note">No module tree in this trace.</p>')))

    split_seen = has_token_split(trace)
    hrows = hook_rows(trace)
    hook_html = []
    for model_path in dict.fromkeys(r.model_path for r in hrows):
        rows = [r for r in hrows if r.model_path == model_path]
        split = ["vision tokens", "language tokens"] if split_seen else []
        hook_html.append(f"<h3>{_e(model_path or 'model')}</h3>" + _table(
            ["hook", "served by", "mixin class", "dispatches", "layers", *split],
            [[r.hook, r.origin, r.mixin_class, str(r.dispatches or ""), r.layers]
             + ([f"{r.vision_tokens:,}" if r.vision_tokens else "",
                 f"{r.language_tokens:,}" if r.language_tokens else ""] if split else []) for r in rows],
            numeric=(3, 5, 6),
            row_attrs=[' class="default"' if r.origin == "default" and not r.dispatches else "" for r in rows]))
    changes = mixin_changes(trace)
    hook_html.append("<h3>How add_mixin / del_mixin changed the tables</h3>" + _table(
        ["#", "call", "on", "params", "hook changes"],
        [[str(c.order), c.call, c.model, c.params, "<br>".join(_e(x) for x in c.changes)] for c in changes],
        numeric=(0, 3), raw=(4,)))
    recorded = recorded_note(trace)
    hook_html.append("<h3>Dispatches</h3>" + (f'<p class="note">{_e(recorded)}</p>' if recorded else "")
                     + _dispatch_tree(trace, details, roots))
    sections.append(("hooks", "SAT hooks",
                     '<p class="note">Who serves each of SAT\'s hooks (<code>hook_origins</code>; "default" = '
                     "SAT's built-in implementation), how often each ran, and every dispatch with the mixin that "
                     "served it and the weights it used (click one).</p>" + "".join(hook_html)))

    srows = step_rows(trace)
    if srows:
        headers = ["step", "phase", "tokens fed", "sequence length", "KV cache (mems) in", "sampled token",
                   "module calls", "hook calls"] + (["vision-expert tokens"] if split_seen else []) \
            + (["time"] if timings else [])
        steps = _table(headers, [
            [str(r.step), r.phase, str(r.tokens_fed), str(r.sequence_length), r.mems,
             "" if r.sampled_token is None else f"{r.sampled_token} {r.piece!r}" if r.piece else str(r.sampled_token),
             maybe_count(r.modules), maybe_count(r.hooks)] + ([maybe_count(r.vision_tokens)] if split_seen else [])
            + ([duration_text(r.duration_ns)] if timings else []) for r in srows],
            numeric=(0, 2, 3, 6, 7, 8), shape_cols=(4,))
        note = summary_note(trace)
        if note:
            steps += f'<p class="note">{_e(note)}</p>'
        qa = "".join(f"<p><b>{key}:</b> <code>{_e(trace.meta[key])}</code></p>" for key in ("query", "response")
                     if trace.meta.get(key) is not None)
        sections.append(("steps", "Generation steps",
                         '<p class="note">SAT\'s <code>filling_sequence</code>: one context forward over the whole '
                         "prompt, then one token per step reading the KV cache.</p>" + qa + steps))

    sections += _other_views(trace, views)
    body = "".join(f'<section id="{key}"><h2>{_e(name)}</h2>{content}</section>' for key, name, content in sections)
    return _page(title, header, [(k, n) for k, n, _ in sections], body, {"details": details})


# Views the page draws in sections of their own above; any other view the trace has data for (a
# model adapter's, e.g. CogAgent's cross view, or a fine-tuning trace's table and loss curve) gets
# a plain section: its text, its picture.
_DRAWN = frozenset({"architecture", "tokens", "calls", "modules", "tree", "hooks", "steps"})


def _other_views(trace: Trace, views: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    import base64

    out: list[tuple[str, str, str]] = []
    for name, view in sorted(views.items()):
        if name in _DRAWN or not view.available(trace):
            continue
        try:
            parts = [f'<p class="note">{_e(view.caption)}</p>']
            if view.png is not None:
                data = base64.b64encode(view.png(trace)).decode("ascii")
                parts.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}"></figure>')
            if view.text is not None:
                parts.append(f"<pre>{_e(view.render_text(trace))}</pre>")
        except view.errors:
            continue
        out.append((f"view-{name}", name.capitalize(), "".join(parts)))
    return out


def _walk(forest: Sequence[CallNode]) -> list[CallNode]:
    out: list[CallNode] = []
    stack = list(reversed(forest))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


# -- two traces side by side --------------------------------------------------------------------------

_KIND_TEXT = {"only_a": "only in A", "only_b": "only in B", "changed": ""}


def _value(v: Any) -> str:
    from .diffview import value_text

    return value_text(v, limit=400)


def render_diff_html(diff: TraceDiff, a: Trace, b: Trace, *, links: bool = True) -> str:
    """``cogtrace diff --format html``: the explorer in two columns, differences highlighted,
    unchanged runs of calls folded. ``links=False`` leaves out the ``vscode://`` links (absolute
    paths of this machine), for pages committed to the docs."""
    from .diffview import grouped

    details: dict[str, Any] = {}
    for side, trace in (("a", a), ("b", b)):
        for e in trace.events:
            if e.category == "construction":
                facts = _call_detail(e, (), timings=False)
                if not links and facts.get("source"):
                    facts["source"] = {"text": facts["source"]["text"]}
                details[f"{side}:{e.id}"] = facts
    counts = diff.counts()
    summary = ('<p class="counts">' + "".join(
        f'<span class="{"zero" if n == 0 else ""}"><a href="#{s}">{s}</a> {n}</span>' for s, n in counts.items())
        + "</p>")
    verdict = "no differences" if diff.same else f"{sum(counts.values())} differences"
    header = (f"<header><h1>cogtrace diff — {_e(verdict)}</h1><div class=facts>A: <code>{_e(diff.a_name)}</code>"
              f" · B: <code>{_e(diff.b_name)}</code></div></header>")
    sections = [("summary", "Summary", '<p class="note">Volatile fields (times, event ids, addresses, absolute '
                 "paths) are never differences. Click a call for both sides' details.</p>" + summary)]

    # construction calls, aligned; runs of 3+ unchanged rows fold
    bodies: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= 3:
            bodies.append(f'<tbody class="same collapsed"><tr class="foldrow"><td colspan="2">▸ {len(run)} unchanged '
                          f'calls (click to unfold)</td></tr>{"".join(run)}</tbody>')
        elif run:
            bodies.append(f"<tbody>{''.join(run)}</tbody>")
        run.clear()

    for pair in diff.calls:
        kind = "only_a" if pair.b is None else "only_b" if pair.a is None else "changed" if pair.changed else ""
        refs = " ".join(r for r in (f"a:{pair.a}" if pair.a is not None else "",
                                    f"b:{pair.b}" if pair.b is not None else "") if r)
        pad = f' style="padding-left:{6 + 16 * pair.depth}px"'
        note = (f'<br><span class="tag hook">{_e(", ".join(pair.changed))}</span>' if pair.changed else "")
        row = (f'<tr class="{kind}" data-ref="{refs}"><td class="a"{pad}><span class="name">{_e(pair.a_label)}</span>'
               f'</td><td class="b"{pad}><span class="name">{_e(pair.b_label)}</span>{note}</td></tr>')
        if kind:
            flush()
            bodies.append(f"<tbody>{row}</tbody>")
        else:
            run.append(row)
    flush()
    calls = ('<table class="filterable full"><thead><tr><th>A</th><th>B</th></tr></thead>'
             + "".join(bodies) + "</table>") if diff.calls else '<p class="note">No construction events.</p>'
    sections.append(("construction", "Construction calls",
                     '<p class="note">Aligned by their place in the call tree; a call one side wraps around '
                     "the other's is shown only on its side.</p>" + calls + _difference_table(diff, "construction",
                                                                                            grouped)))
    for section in SECTIONS:
        if section in ("construction", "generation", "tokens"):
            continue
        sections.append((section, section.capitalize(), _difference_table(diff, section, grouped)))

    # generation steps side by side
    if diff.steps:
        fields = ("phase", "tokens_fed", "sequence_length", "mems", "sampled_token", "piece")
        head = "<tr><th>step</th>" + "".join(f"<th>A {f}</th>" for f in fields) + "".join(
            f"<th>B {f}</th>" for f in fields) + "</tr>"
        rows = []
        for s in diff.steps:
            cells = [f"<td>{s.step}</td>"]
            for step_facts in (s.a, s.b):
                for f in fields:
                    cls = " class=changed" if f in s.changed or "" in s.changed else ""
                    cells.append(f"<td{cls}>{_e('—' if step_facts is None else _value(step_facts.get(f)))}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        steps = f'<table class="filterable"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    else:
        steps = '<p class="note">Neither trace has generation steps.</p>'
    sections.append(("generation", "Generation steps", steps))

    strips = []
    for name, trace in (("A", a), ("B", b)):
        layout = trace.meta.get("token_layout")
        strips.append(f"<div><h3>{name}</h3>" + (token_cells(layout) if isinstance(layout, Mapping) and
                                                    layout.get("tokens") else '<p class="note">no token layout</p>')
                      + "</div>")
    sections.append(("tokens", "Token layout", _difference_table(diff, "tokens", grouped)
                     + f'<div class="both">{"".join(strips)}</div>'))

    body = "".join(f'<section id="{key}"><h2>{_e(name)}</h2>{content}</section>' for key, name, content in sections)
    return _page(f"cogtrace diff — {diff.a_name} vs {diff.b_name}", header,
                 [(k, n) for k, n, _ in sections], body, {"details": details})


def _difference_table(diff: TraceDiff, section: str, grouped: Callable[..., Any]) -> str:
    found = diff.of(section)
    if not found:
        return '<p class="note">No differences.</p>'
    rows = grouped(section, found)
    return _table(["where", "what", "A", "B"],
                  [[where, what or _KIND_TEXT[d.kind], _value(d.a), _value(d.b)] for where, what, d in rows],
                  row_attrs=[f' class="{d.kind}"' for _, _, d in rows], shape_cols=())
