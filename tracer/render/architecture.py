"""Any SAT model's data flow, read off its trace: embeddings → N × layer → final, with traced shapes.

Nothing here is drawn from a template. Every box is a module of the trace's module tree (SAT's
``BaseTransformer`` layout: ``transformer.word_embeddings``, ``transformer.layers.N``,
``transformer.final_layernorm``, the model's ``mixins.*``), every hook line is a hook the
trace's hook table names with the mixin that serves it (``hook_origins``), and every edge label
is the shape of the first recorded call. A model with no forward in its trace gets the same
boxes without shapes. Models with a picture of their own (CogVLM) replace this view through
their adapter (:mod:`tracer.render.registry`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..schema import ModuleNode, Trace
from .common import count_text, human_count, shapes_text
from .diagrams import COLOURS, edge, esc, graph, node
from .modules import module_calls

__all__ = ["architecture_dot"]

_LAYER = re.compile(r"^(?P<stack>(?:.+\.)?layers)\.(?P<index>\d+)$")
# Hooks SAT dispatches once per forward, outside the layers, and where they sit in the flow.
_BEFORE = ("word_embedding_forward", "position_embedding_forward")
_AFTER = ("final_forward",)
# Hooks SAT dispatches inside each layer, and the layer part that calls them (sat/model/transformer.py).
_HOOK_PART = {"attention_forward": "attention", "attention_fn": "attention", "mlp_forward": "mlp",
              "cross_attention_forward": "cross_attention"}


def _first_shapes(calls: Mapping[str, list[tuple[list[Any], list[Any]]]], path: str) -> tuple[str, str]:
    found = calls.get(path)
    if not found:
        return "", ""
    inputs, outputs = found[0]
    return shapes_text(inputs, limit=2), shapes_text(outputs, limit=2)


def _main_stack(nodes: Mapping[str, ModuleNode]) -> tuple[str, list[str]]:
    """The ``layers`` ModuleList of the root model (the shallowest one), and its layer paths."""
    stacks: dict[str, list[str]] = {}
    for path in nodes:
        m = _LAYER.match(path)
        if m:
            stacks.setdefault(m.group("stack"), []).append(path)
    if not stacks:
        return "", []
    stack = min(stacks, key=lambda s: (s.count("."), s))
    return stack, sorted(stacks[stack], key=lambda p: int(p.rpartition(".")[2]))


def _children(nodes: Sequence[ModuleNode], parent: str) -> list[ModuleNode]:
    prefix = parent + "." if parent else ""
    return [m for m in nodes if m.path.startswith(prefix) and m.path != parent and "." not in m.path[len(prefix):]]


def _box(m: ModuleNode, extra: Sequence[str] = ()) -> str:
    lines = [m.path.rpartition(".")[2] or m.class_name, m.class_name]
    if m.total:
        lines.append(f"{count_text(m.total)} params")
    return "\n".join([*lines, *extra])


def _served(hooks: Mapping[str, str], name: str) -> str:
    origin = hooks.get(name, "")
    return f"{name} ← {origin.split(' -> ')[0]}" if origin else name


def architecture_dot(trace: Trace) -> str:
    """The generic architecture diagram of ``trace`` as DOT (deterministic, byte-stable)."""
    nodes = {m.path: m for m in trace.modules}
    root = nodes.get("")
    calls = module_calls(trace)
    hooks = dict(trace.hooks)
    body: list[str] = []
    if root is None:
        body.append(node("empty", "no module tree in this trace (nothing built or run)"))
        return graph("architecture", body)

    stack, layers = _main_stack(nodes)
    transformer = stack.rpartition(".")[0] if "." in stack else ""
    root_in, root_out = _first_shapes(calls, "")
    body.append(node("input", "input\n" + (root_in or "(no forward traced)"), shape="note", fillcolor=COLOURS["io"]))

    # Before the layers: the transformer's other children that come before the layer stack.
    around = _children(trace.modules, transformer) if stack else []
    at = [m.path for m in around].index(stack) if stack else 0
    # Before and after the stack in the order they ran (registration order when never called).
    ran = {path: i for i, path in enumerate(calls)}
    before = sorted(around[:at], key=lambda m: ran.get(m.path, len(ran)))
    after = sorted(around[at + 1:], key=lambda m: ran.get(m.path, len(ran)))
    previous, previous_shape = "input", root_in
    for m in before:
        mine = [_served(hooks, h) for h in _BEFORE if h in hooks and h.split("_")[0] in m.path.rpartition(".")[2]]
        body.append(node(m.path, _box(m, [f"hook {s}" for s in mine]), fillcolor=COLOURS["language"]))
        body.append(edge(previous, m.path, label=previous_shape))
        previous, previous_shape = m.path, _first_shapes(calls, m.path)[1]

    if layers:
        first = layers[0]
        layer_in, _ = _first_shapes(calls, first)
        _, layer_out = _first_shapes(calls, layers[-1])
        total = sum(nodes[p].total for p in layers)
        label = f"{stack} ×{len(layers)} ({nodes[first].class_name}, {count_text(total)} params in all)"
        body += ["  subgraph cluster_layers {", f'    label="{esc(label)}";', '    style="rounded"; color="#5b8cc0";']
        # In the order they ran (pre- or post-LN), registration order when never called.
        parts = sorted(_children(trace.modules, first), key=lambda m: ran.get(m.path, len(ran)))
        # Who served each hook in the first layer: recorded dispatches (SAT's defaults too),
        # else the hook table (a construction-only trace).
        served = {e.name: str(e.data.get("served_by") or "default") for e in trace.of("hook")
                  if e.data.get("layer_id") == 0 and not e.data.get("model_path")}
        served.update({h: hooks[h].split(" -> ")[0] for h in hooks if h not in served})
        layer_hooks = sorted(h for h in served if h not in _BEFORE + _AFTER)
        for m in parts:
            mine = [h for h in layer_hooks if _HOOK_PART.get(h) == m.path.rpartition(".")[2]]
            body.append(node(m.path, _box(m, [f"hook {h} ← {served[h]}" for h in mine]),
                             fillcolor=COLOURS["language"]))
        body.append(node(f"{first}.hooks", "hooks in every layer (← served by):\n"
                         + "\n".join(f"{h} ← {served[h]}" for h in layer_hooks)
                         if layer_hooks else "no hook dispatches recorded in the layers",
                         shape="plaintext", fillcolor="none"))
        body.append("  }")
        entry = parts[0].path if parts else f"{first}.hooks"
        body.append(edge(previous, entry, label=layer_in or previous_shape))
        for a, b in zip(parts, parts[1:], strict=False):
            body.append(edge(a.path, b.path, label=_first_shapes(calls, a.path)[1]))
        previous = parts[-1].path if parts else entry
        previous_shape = layer_out
    for m in after:
        mine = [_served(hooks, h) for h in _AFTER if h in hooks and m.path.endswith("final_layernorm")]
        body.append(node(m.path, _box(m, [f"hook {s}" for s in mine]), fillcolor=COLOURS["language"]))
        body.append(edge(previous, m.path, label=previous_shape))
        previous, previous_shape = m.path, _first_shapes(calls, m.path)[1]
    body.append(node("output", "output\n" + (root_out or "(no forward traced)"), shape="note", fillcolor=COLOURS["io"]))
    body.append(edge(previous, "output", label=previous_shape if previous_shape else root_out))

    # The mixins: the weights each one owns and the hooks it serves.
    mixins = _children(trace.modules, "mixins")
    if mixins:
        body += ["  subgraph cluster_mixins {", '    label="mixins (model.mixins)";',
                 '    style="rounded,dashed"; color="#999999";']
        for m in mixins:
            name = m.path.rpartition(".")[2]
            mixin_hooks = sorted(h for h, origin in hooks.items() if origin.split(" -> ")[0] == name)
            body.append(node(m.path, _box(m, [f"serves {h}" for h in mixin_hooks]), fillcolor=COLOURS["mixin"]))
        body.append("  }")
    title = f"{root.class_name}: {count_text(root.total)} parameters ({human_count(root.total)})"
    body.append(f'  label="{esc(title)}"; labelloc=t; fontsize=13;')
    return graph("architecture", body)
