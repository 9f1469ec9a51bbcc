"""The module tree: where every weight lives, how many there are, what shapes flowed through.

``print(model)`` already folds identical layers (``(0-31): 32 x BaseTransformerLayer``) but
shows neither parameter counts nor shapes; torchinfo shows shapes but only of modules whose
``forward`` ran, and never says that ``mixins.mlp.vision_dense_h_to_4h_list.0`` is the vision
expert of ``transformer.layers.0.mlp``. This view joins the static tree recorded in
``Trace.modules`` with the ``module`` events of the run and folds identical siblings
(``layers.0–31 ×32``) — identical meaning same class, same parameter shapes, same children
and the same recorded call shapes, so a fold never hides a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..schema import ModuleNode, Trace
from .common import count_text, human_count, recorded_note, shapes_text

__all__ = ["ModuleRow", "check_totals", "module_calls", "module_rows", "render_modules"]


@dataclass(frozen=True)
class ModuleRow:
    """One line of the tree; ``count`` > 1 when identical siblings were folded into it."""

    depth: int
    prefix: str  # tree guides, e.g. "│  ├─ "
    name: str  # "layers.0–1 ×2", "attention", or the root's class name
    path: str  # path of the first folded member ("" for the root)
    class_name: str
    count: int
    own: int  # parameters owned directly by one member
    total: int  # parameters of all members, children included
    calls: int  # forward calls recorded for one member
    inputs: str
    outputs: str


def _parent(path: str) -> str:
    return path.rpartition(".")[0] if "." in path else ""


def _leaf(path: str) -> str:
    return path.rpartition(".")[2]


def module_calls(trace: Trace) -> dict[str, list[tuple[list[Any], list[Any]]]]:
    """module path -> [(inputs, outputs), …] for every recorded forward, in call order."""
    calls: dict[str, list[tuple[list[Any], list[Any]]]] = {}
    for e in sorted(trace.of("module"), key=lambda e: (e.start_ns, e.id)):
        path = str(e.data.get("path", e.name))
        calls.setdefault(path, []).append((list(e.data.get("inputs") or []), list(e.data.get("outputs") or [])))
    return calls


class _Tree:
    def __init__(self, trace: Trace) -> None:
        self.nodes: dict[str, ModuleNode] = {m.path: m for m in trace.modules}
        self.children: dict[str, list[str]] = {}
        for m in trace.modules:  # trace order = registration order, as print(model) shows it
            if m.path:
                self.children.setdefault(_parent(m.path), []).append(m.path)
        self.calls = module_calls(trace)
        self.kwargs: dict[str, dict[str, Any]] = {}
        for e in sorted(trace.of("module"), key=lambda e: (e.start_ns, e.id)):
            self.kwargs.setdefault(str(e.data.get("path", e.name)), dict(e.data.get("kwargs") or {}))
        self._sig: dict[str, tuple[Any, ...]] = {}

    def signature(self, path: str) -> tuple[Any, ...]:
        """Everything that must match for two siblings to fold into one row."""
        if path not in self._sig:
            node = self.nodes[path]
            calls = tuple((shapes_text(i, limit=99), shapes_text(o, limit=99)) for i, o in self.calls.get(path, []))
            kids = tuple((_leaf(c), self.signature(c)) for c in self.children.get(path, []))
            self._sig[path] = (node.class_name, tuple(sorted(node.param_shapes.items())), calls, kids)
        return self._sig[path]

    def groups(self, path: str) -> list[list[str]]:
        """Children of ``path`` with consecutive identical numbered siblings grouped."""
        out: list[list[str]] = []
        for child in self.children.get(path, []):
            last = out[-1] if out else None
            if (last is not None and _leaf(child).isdigit() and _leaf(last[0]).isdigit()
                    and self.signature(child) == self.signature(last[0])):
                last.append(child)
            else:
                out.append([child])
        return out


def _fold_name(members: Sequence[str]) -> str:
    first, last = _leaf(members[0]), _leaf(members[-1])
    return first if len(members) == 1 else f"{first}–{last} ×{len(members)}"


def module_rows(trace: Trace, *, max_depth: int | None = None) -> list[ModuleRow]:
    """The folded tree as rows, root first; ``max_depth`` cuts deeper rows (0 = root only)."""
    tree = _Tree(trace)
    if "" not in tree.nodes:
        return []
    rows: list[ModuleRow] = []

    def row(members: Sequence[str], name: str, depth: int, prefix: str) -> ModuleRow:
        node = tree.nodes[members[0]]
        calls = tree.calls.get(members[0], [])
        first_in, first_out = calls[0] if calls else ([], [])
        inputs = shapes_text(first_in, limit=2)
        if calls and not inputs:  # called with keywords only (a BaseModel's forward)
            kwargs = tree.kwargs.get(members[0], {})
            inputs = ", ".join(f"{k}={shapes_text([v])}" for k, v in list(kwargs.items())[:2])
        return ModuleRow(depth=depth, prefix=prefix, name=name, path=members[0], class_name=node.class_name,
                         count=len(members), own=node.parameters,
                         total=sum(tree.nodes[m].total for m in members), calls=len(calls),
                         inputs=inputs, outputs=shapes_text(first_out, limit=2) or "·")

    def walk(path: str, depth: int, guides: str) -> None:
        if max_depth is not None and depth > max_depth:
            return
        groups = tree.groups(path)
        for i, members in enumerate(groups):
            last = i == len(groups) - 1
            branch = "└─ " if last else "├─ "
            name = _fold_name(members)
            # A container whose numbered children all fold into one row (ModuleList 'layers'
            # holding 32 identical layers) becomes a single 'layers.0–31 ×32' row.
            inner = tree.groups(members[0])
            if (len(members) == 1 and not tree.nodes[members[0]].parameters and len(inner) == 1
                    and _leaf(inner[0][0]).isdigit() and len(inner[0]) > 1
                    and not tree.calls.get(members[0])):
                members, name = inner[0], f"{name}.{_fold_name(inner[0])}"
            rows.append(row(members, name, depth, guides + branch))
            walk(members[0], depth + 1, guides + ("   " if last else "│  "))

    root = tree.nodes[""]
    rows.append(row([""], root.class_name, 0, ""))
    walk("", 1, "")
    return rows


def check_totals(trace: Trace) -> list[str]:
    """Problems with the recorded counts: every node's total must be its own parameters plus
    its children's totals. An empty list means the tree adds up."""
    tree = _Tree(trace)
    problems = []
    for path, node in tree.nodes.items():
        expected = node.parameters + sum(tree.nodes[c].total for c in tree.children.get(path, []))
        if expected != node.total:
            problems.append(f"{path or '<root>'}: total {node.total:,} != own {node.parameters:,} "
                            f"+ children {expected - node.parameters:,}")
    return problems


def render_modules(trace: Trace, *, width: int = 140, max_depth: int | None = None, styles: bool = False) -> str:
    """The module tree as a terminal table (text, so it can be tested and piped)."""
    from rich.table import Table

    from .terminal import export_text

    rows = module_rows(trace, max_depth=max_depth)
    table = Table(title="Module tree: where the weights live (identical numbered siblings folded)",
                  title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("module", no_wrap=True)
    table.add_column("class", no_wrap=True, style="cyan")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("calls", justify="right")
    table.add_column("input → output (first call)", overflow="fold")
    for r in rows:
        shapes = f"{r.inputs} → {r.outputs}" if r.calls else ""
        table.add_row(r.prefix + r.name, r.class_name, count_text(r.total) if r.total else "·",
                      str(r.calls) if r.calls else "", shapes)
    total = next((m.total for m in trace.modules if m.path == ""), 0)
    note = f"total parameters: {count_text(total)} ({human_count(total)})"
    problems = check_totals(trace)
    if problems:
        note += f"; WARNING: {len(problems)} counts do not add up: " + "; ".join(problems[:3])
    recorded = recorded_note(trace)
    return export_text([table, note] + ([recorded] if recorded else []), width=width, styles=styles)
