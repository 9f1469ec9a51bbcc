"""One self-contained HTML file with every view of a trace.

Everything is inline — CSS, a few lines of JavaScript, the Graphviz diagrams and the
token-layout picture as ``data:`` URIs — so the file opens from disk, in a mail attachment or
on a machine with no network, and shows the same thing everywhere. The only links are
in-page anchors and ``vscode://file/…`` links that open a recorded source line in VS Code.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from typing import Any

from ..schema import Event, Trace
from .calls import CallNode, call_label, call_tree, hook_changes
from .common import (
    count_text,
    delta_text,
    duration_text,
    has_token_split,
    human_count,
    source_text,
    vscode_link,
)
from .hooks import hook_rows, mixin_changes
from .modules import check_totals, module_rows
from .steps import step_rows

__all__ = ["render_html"]

CSS = """
:root { --fg:#1d232b; --muted:#66707c; --line:#d9dee4; --accent:#2f6fb0; --bg:#fbfcfd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
header { background: #23374d; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .facts { color: #cfd9e4; font-size: 13px; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 8px 28px; z-index: 2; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { margin-top: 26px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
p.note { color: var(--muted); margin: 4px 0 10px; }
figure { margin: 8px 0; overflow-x: auto; background: #fff; border: 1px solid var(--line); padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; }
figure.wide img { max-width: none; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.shape { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; white-space: nowrap; }
td.tree { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; white-space: pre; }
tr.default td { color: var(--muted); }
code, pre, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
pre { background: #fff; border: 1px solid var(--line); padding: 10px; overflow-x: auto; }
details { margin-left: 18px; }
details > summary { cursor: pointer; margin-left: -18px; padding: 1px 0; }
.leaf { margin-left: 0; padding: 1px 0; }
.delta { color: #2a7a3a; font-weight: 600; margin-left: 8px; }
.hook { color: #8a3f9c; margin-left: 8px; }
.src { color: var(--muted); margin-left: 8px; font-size: 12px; }
.src a { color: var(--muted); }
.dur { color: var(--muted); margin-left: 8px; font-size: 12px; }
.err { color: #b00020; font-weight: 600; }
.toolbar { margin: 6px 0; }
.toolbar button { margin-right: 6px; }
.toolbar input { padding: 3px 6px; width: 320px; }
"""

JS = """
function setAll(id, open) { document.querySelectorAll('#' + id + ' details').forEach(d => d.open = open); }
function filterRows(input, tableId) {
  const q = input.value.toLowerCase();
  document.querySelectorAll('#' + tableId + ' tbody tr').forEach(tr => {
    tr.style.display = tr.textContent.toLowerCase().includes(q) ? '' : 'none';
  });
}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _source(loc: Any, roots: Sequence[str]) -> str:
    if loc is None:
        return ""
    text = _e(source_text(loc))
    link = vscode_link(loc, roots)
    inner = f'<a href="{_e(link)}" title="open in VS Code">{text}</a>' if link else text
    return f'<span class="src">{inner}</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (),
           table_id: str = "", row_classes: Sequence[str] | None = None, raw: Sequence[int] = (),
           col_classes: dict[int, str] | None = None) -> str:
    """An HTML table; cells are escaped unless their column is in ``raw``."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    classes = {i: "num" for i in numeric} | dict(col_classes or {})
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(
            f'<td{f" class={classes[i]}" if i in classes else ""}>{cell if i in raw else _e(cell)}</td>'
            for i, cell in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- sections ----------------------------------------------------------------------------------

def _call_html(node: CallNode, roots: Sequence[str], timings: bool) -> str:
    e: Event = node.event
    d = e.data
    defined = f' title="defined at {_e(source_text(d["defined_at"]))}"' if d.get("defined_at") else ""
    parts = [f"<span class=mono{defined}>{node.order}. {_e(call_label(e))}</span>"]
    delta = delta_text(d.get("params_before"), d.get("params_after"))
    if delta:
        parts.append(f'<span class="delta">{_e(delta)}</span>')
    if d.get("result") not in (None, "", "None") and d.get("function") not in ("add_mixin", "del_mixin"):
        parts.append(f'<span class="dur">→ {_e(d["result"])}</span>')
    for change in hook_changes(d.get("hooks_before"), d.get("hooks_after")):
        parts.append(f'<span class="hook">hook {_e(change)}</span>')
    parts.append(_source(e.source, roots))
    if timings:
        parts.append(f'<span class="dur">{_e(duration_text(e.duration_ns))}</span>')
    if e.error:
        parts.append(f'<span class="err">raised {_e(e.error)}</span>')
    line = " ".join(p for p in parts if p)
    if not node.children:
        return f'<div class="leaf">{line}</div>'
    inner = "".join(_call_html(c, roots, timings) for c in node.children)
    return f"<details open><summary>{line}</summary>{inner}</details>"


def _figure(render: Callable[[], bytes], mime: str, alt: str, *, wide: bool = False) -> str:
    """A diagram as a data URI; a missing ``dot`` becomes a note, not a failed report."""
    from .diagrams import GraphvizMissing

    try:
        data = render()
    except GraphvizMissing as e:
        return f'<p class="note">{_e(alt)}: not drawn ({_e(e)})</p>'
    cls = ' class="wide"' if wide else ""
    return f'<figure{cls}><img alt="{_e(alt)}" src="{_data_uri(mime, data)}"></figure>'


def _header(trace: Trace) -> tuple[str, str]:
    meta = trace.meta
    root = next((m for m in trace.modules if m.path == ""), None)
    facts = []
    if root is not None:
        facts.append(f"{_e(root.class_name)}: {count_text(root.total)} parameters ({human_count(root.total)})")
    for key in ("config", "device", "command"):
        if meta.get(key):
            facts.append(f"{key}: <code>{_e(meta[key])}</code>")
    versions = dict(meta.get("versions") or {}) if isinstance(meta.get("versions"), dict) else {}
    versions.update({name: meta[key] for key, name in (("sat", "SAT"), ("torch", "torch"), ("python", "Python"))
                     if meta.get(key)})
    if versions:
        facts.append(", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(versions.items())))
    counts: dict[str, int] = {}
    for e in trace.events:
        counts[e.category] = counts.get(e.category, 0) + 1
    facts.append("events: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
    title = f"cogtrace report — {meta.get('config') or (root.class_name if root else 'trace')}"
    return (f"<header><h1>{_e(title)}</h1><div class=facts>{' · '.join(facts)}</div></header>"), title


def render_html(trace: Trace, *, timings: bool = True, source_roots: Sequence[str] = ()) -> str:
    """The whole report as one HTML string (write it with ``encoding='utf-8'``)."""
    from .diagrams import to_svg
    from .registry import views_for

    views = views_for(trace)  # the generic views, with the model adapter's over them
    header, title = _header(trace)
    sections: list[tuple[str, str, str]] = []

    if trace.exception:
        sections.append(("exception", "Exception", f'<pre class="err">{_e(trace.exception)}</pre>'))

    arch, calls_view, modules_dot = views["architecture"].dot, views["calls"].dot, views["modules"].dot
    assert arch is not None and calls_view is not None and modules_dot is not None
    sections.append(("architecture", "Architecture",
                     f'<p class="note">{_e(views["architecture"].caption)}; every box names the module path that holds its '
                     'weights.</p>'
                     + _figure(lambda: to_svg(arch(trace)), "image/svg+xml", "architecture diagram")))

    tokens = views.get("tokens")
    if tokens is not None and tokens.png is not None:  # a model whose adapter draws its input sequence
        try:
            layout_text = tokens.render_text(trace)
            layout = (f'<p class="note">{_e(tokens.caption)}: the input sequence of the chat turn, image tokens '
                      'folded; masks and position ids exactly as the model received them.</p>'
                      + f'<figure class="wide"><img alt="token layout" src="{_data_uri("image/png", tokens.png(trace))}">'
                      "</figure><details><summary>as text</summary><pre>" + _e(layout_text) + "</pre></details>")
        except tokens.errors as e:
            layout = f'<p class="note">No token layout: {_e(e)}.</p>'
        sections.append(("tokens", "Token layout", layout))

    forest = call_tree(trace)
    roots = list(source_roots)
    calls = "".join(_call_html(n, roots, timings) for n in forest) or '<p class="note">No construction events.</p>'
    sections.append(("calls", "Construction calls",
                     '<p class="note">SAT\'s construction API in call order, nested as it ran; links open the '
                     'calling line in VS Code.</p>'
                     '<div class="toolbar"><button onclick="setAll(\'calltree\', true)">expand all</button>'
                     '<button onclick="setAll(\'calltree\', false)">collapse all</button></div>'
                     f'<div id="calltree">{calls}</div>'
                     '<details><summary>call graph (clustered by class, edges numbered in call order)</summary>'
                     + _figure(lambda: to_svg(calls_view(trace)), "image/svg+xml", "construction call graph", wide=True)
                     + "</details>"))

    mrows = module_rows(trace)
    problems = check_totals(trace)
    module_table = _table(
        ["module (hover: full path)", "class", "params", "calls", "input (first call)", "output (first call)"],
        [[f'<span title="{_e(r.path or r.class_name)}">{_e(r.prefix + r.name)}</span>', r.class_name,
          count_text(r.total) if r.total else "", str(r.calls or ""), r.inputs, r.outputs if r.calls else ""]
         for r in mrows],
        numeric=(2, 3), table_id="modtable", raw=(0,), col_classes={0: "tree", 4: "shape", 5: "shape"})
    totals = ("parameter totals add up" if not problems else f"{len(problems)} totals do not add up: "
              + "; ".join(problems[:3]))
    sections.append(("modules", "Module tree",
                     f'<p class="note">Where the weights live; identical numbered siblings are folded '
                     f'("layers.0–31 ×32"). Check: {_e(totals)}.</p>'
                     '<div class="toolbar"><input placeholder="filter modules…" '
                     'oninput="filterRows(this, \'modtable\')"></div>' + module_table
                     + '<details><summary>module tree diagram</summary>'
                     + _figure(lambda: to_svg(modules_dot(trace)), "image/svg+xml", "module tree", wide=True)
                     + "</details>"))

    hrows = hook_rows(trace)
    split_seen = has_token_split(trace)
    hook_html = []
    for model_path in dict.fromkeys(r.model_path for r in hrows):
        rows = [r for r in hrows if r.model_path == model_path]
        # Token-split columns only for a model whose adapter records a split (CogVLM's experts).
        split = ["vision tokens", "language tokens"] if split_seen else []
        hook_html.append(f"<h3>{_e(model_path or 'model')}</h3>" + _table(
            ["hook", "served by", "mixin class", "dispatches", "layers", *split],
            [[r.hook, r.origin, r.mixin_class, str(r.dispatches or ""), r.layers]
             + ([f"{r.vision_tokens:,}" if r.vision_tokens else "",
                 f"{r.language_tokens:,}" if r.language_tokens else ""] if split else [])
             for r in rows], numeric=(3, 5, 6),
            row_classes=["default" if r.origin == "default" and not r.dispatches else "" for r in rows]))
    changes = mixin_changes(trace)
    hook_html.append("<h3>How add_mixin / del_mixin changed the tables</h3>" + _table(
        ["#", "call", "on", "params", "hook changes"],
        [[str(c.order), c.call, c.model, c.params, "<br>".join(_e(x) for x in c.changes)] for c in changes],
        numeric=(0, 3), raw=(4,)))
    sections.append(("hooks", "SAT hooks",
                     '<p class="note">Who serves each of SAT\'s nine hooks (SAT\'s <code>hook_origins</code>; '
                     '"default" = SAT\'s built-in implementation) and how often each ran. Forward-hook tools cannot '
                     'see these calls: a SAT hook is a plain function, not a module.</p>' + "".join(hook_html)))

    srows = step_rows(trace)
    step_headers = ["step", "phase", "tokens fed", "sequence length", "KV cache (mems) in", "sampled token",
                    "module calls", "hook calls"] + (["vision-expert tokens"] if split_seen else []) \
        + (["time"] if timings else [])
    steps_table = _table(step_headers, [
        [str(r.step), r.phase, str(r.tokens_fed), str(r.sequence_length), r.mems,
         "" if r.sampled_token is None else f"{r.sampled_token} {r.piece!r}" if r.piece else str(r.sampled_token),
         str(r.modules), str(r.hooks)] + ([str(r.vision_tokens)] if split_seen else [])
        + ([duration_text(r.duration_ns)] if timings else [])
        for r in srows], numeric=(0, 2, 3, 6, 7, 8))
    response = trace.meta.get("response")
    query = trace.meta.get("query")
    qa = ""
    if query is not None:
        qa += f"<p><b>query:</b> <code>{_e(query)}</code></p>"
    if response is not None:
        qa += f"<p><b>response:</b> <code>{_e(response)}</code></p>"
    sections.append(("steps", "Generation steps",
                     '<p class="note">SAT\'s <code>filling_sequence</code>: one context forward over the whole '
                     'prompt, then one token per step reading the KV cache.</p>'
                     + qa + (steps_table if srows else '<p class="note">No generation events.</p>')))

    nav = "".join(f'<a href="#{key}">{_e(name)}</a>' for key, name, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(name)}</h2>{content}</section>' for key, name, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style><script>{JS}</script></head><body>{header}<nav>{nav}</nav><main>{body}</main>"
            "<footer><p class=\"note\" style=\"padding:0 28px 20px\">Written by cogtrace from a saved trace; "
            "self-contained (no network access needed).</p></footer></body></html>\n")

