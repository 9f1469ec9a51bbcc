"""The construction call tree: the article's section 2 as it actually ran.

Each recorded SAT construction call (``get_model``, the ``__init__`` chain, ``add_mixin``,
``del_mixin``, ``from_pretrained`` …) becomes one node under the call it ran inside, with the
arguments that matter, the parameter delta a mixin brought, how the hook table changed, and
the caller's ``file:line`` — the questions a reader of ``CogVLMModel.__init__`` asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..schema import Event, Trace
from .common import children_index, delta_text, duration_text, source_text

__all__ = ["CallNode", "call_label", "call_tree", "hook_changes", "render_calls"]

MAX_ARG = 48  # characters of one argument summary before it is cut


@dataclass(frozen=True)
class CallNode:
    event: Event
    children: tuple[CallNode, ...]
    order: int  # 1-based position in call order (the numbers on the call graph's edges)


def call_tree(trace: Trace) -> list[CallNode]:
    """Construction events as a forest, numbered in call order. Events of other categories
    in between (a module forward inside ``from_pretrained``) are skipped, not their children."""
    events = [e for e in trace.events if e.category == "construction"]
    index = children_index(events)
    counter = iter(range(1, len(events) + 1))

    def build(e: Event) -> CallNode:
        order = next(counter)
        return CallNode(e, tuple(build(c) for c in index.get(e.id, [])), order)

    return [build(e) for e in index.get(None, [])]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_ARG else text[: MAX_ARG - 1] + "…"


def call_label(e: Event, *, with_args: bool = True, short: bool = False) -> str:
    """``add_mixin('eva', ImageMixin)`` for mixin calls, ``name(k=v, …)`` for the others;
    ``short`` drops the defining class (``BaseModel.``) from mixin calls."""
    d = e.data
    function = str(d.get("function") or e.name.rpartition(".")[2])
    if function in ("add_mixin", "del_mixin") and d.get("mixin"):
        cls = f", {d['mixin_class']}" if function == "add_mixin" and d.get("mixin_class") else ""
        return f"{function if short else e.name}('{d['mixin']}'{cls})"
    if not with_args:
        return e.name
    args = d.get("args") or {}
    if not isinstance(args, Mapping):
        return f"{e.name}({_short(args)})"
    inner = ", ".join(f"{k}={_short(v)}" for k, v in args.items())
    return f"{e.name}({inner})"


def hook_changes(before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> list[str]:
    """['mlp_forward: mlp → default', …] for every hook whose origin changed; SAT's
    ``hook_origins`` leaves a hook out when the default serves it."""
    if before is None or after is None:
        return []
    out = []
    for hook in sorted(set(before) | set(after)):
        old, new = before.get(hook, "default"), after.get(hook, "default")
        if old != new:
            out.append(f"{hook}: {old} → {new}")
    return out


def _details(e: Event, timings: bool) -> list[str]:
    d = e.data
    bits = []
    delta = delta_text(d.get("params_before"), d.get("params_after"))
    if delta:
        bits.append(delta)
    owner, model_path = d.get("owner"), d.get("model_path")
    if d.get("function") in ("add_mixin", "del_mixin") and (owner or model_path):
        bits.append(f"on {owner or '?'}" + (f" at {model_path}" if model_path else ""))
    if d.get("result") not in (None, "", "None") and d.get("function") not in ("add_mixin", "del_mixin"):
        bits.append(f"→ {_short(d['result'])}")
    if timings:
        bits.append(duration_text(e.duration_ns))
    return bits


def render_calls(trace: Trace, *, width: int = 140, timings: bool = True, styles: bool = False) -> str:
    """The call tree as text: one node per call, hook-table changes beneath mixin calls."""
    from rich.text import Text
    from rich.tree import Tree

    from .terminal import export_text

    root = Tree(Text("Construction calls (SAT's API, in call order)", style="bold"), guide_style="dim")

    def add(parent: Tree, node: CallNode) -> None:
        e = node.event
        label = Text(f"{node.order}. ", style="dim")
        label.append(call_label(e), style="bold" if e.data.get("function") in ("add_mixin", "del_mixin") else "")
        details = _details(e, timings)
        if details:
            label.append("   " + "   ".join(details), style="green")
        if e.source is not None:
            label.append(f"   {source_text(e.source)}", style="dim")
        if e.error:
            label.append(f"   raised {e.error}", style="red")
        branch = parent.add(label)
        for change in hook_changes(e.data.get("hooks_before"), e.data.get("hooks_after")):
            branch.add(Text(f"hook {change}", style="magenta"))
        for child in node.children:
            add(branch, child)

    forest = call_tree(trace)
    for node in forest:
        add(root, node)
    if not forest:
        root.add(Text("(no construction events in this trace)", style="dim"))
    return export_text([root], width=width, styles=styles)
