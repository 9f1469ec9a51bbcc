"""Compare two traces: what changed between two builds or runs of a SAT model.

Pure data, standard library only (no torch, SAT, rich or Pillow): ``cogtrace diff`` renders the
result as text, JSON or the two-column explorer page, and a saved trace diffs on any machine.

What is compared, section by section (:data:`SECTIONS`):

``meta``          the run's description (config, command, prompt template, query, answer, versions)
``construction``  SAT construction calls, aligned by their place in the call tree: a call's key is
                  the chain of calls it ran inside, each named by its qualified name (and mixin
                  name for ``add_mixin`` / ``del_mixin``), numbered among same-named siblings. A
                  call only one trace makes inside an extra wrapper (``CogVLMModel.__init__``
                  around ``LLaMAModel.__init__``) is reported as only in that trace and its
                  children are aligned with the other trace's calls at the wrapper's level.
                  Per call: arguments (Namespaces key by key), result, the parameter delta,
                  the hook-table change it made, where it is defined and called from.
``hooks``         the final hook table of each model (who serves each hook, which mixin class),
                  and how often each hook ran
``modules``       the module tree: modules present in one trace only, class and parameter shapes
``shapes``        input and output shapes of each module's and each hook dispatch's first call,
                  call counts, the mixin that served a dispatch and the weights it used
``generation``    ``filling_sequence`` steps side by side (tokens fed, KV cache, sampled token)
``tokens``        the input layout (pieces, the three masks, position ids)

Volatile fields never count as differences: event ids and times, object addresses
(``0x7f…``), and absolute paths (a path is compared by what follows ``site-packages/``, else
by its file name; a recorded source file in this package by its path from ``tracer/``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .schema import Event, Trace

__all__ = ["SECTIONS", "CallPair", "Difference", "StepPair", "TraceDiff", "diff_traces", "fold_key",
           "normalise"]

SECTIONS = ("meta", "construction", "hooks", "modules", "shapes", "generation", "tokens")
Kind = Literal["changed", "only_a", "only_b"]

# meta keys compared in another section (the token layout, the pieces of sampled tokens), or
# volatile: what libraries logged depends on what the process had imported before.
_META_ELSEWHERE = frozenset({"token_layout", "token_pieces", "library_log"})
# Construction data that cascades from earlier calls: compared through derived fields instead
# (param_delta, hook_changes), so one added mixin is one difference, not one per later call.
_CALL_SKIP = frozenset({"function", "params_before", "params_after", "hooks_before", "hooks_after"})

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
# An absolute (or home-relative) path inside a string: '/a/b/c.py', '~/.cache/x/y'.
_ABS_PATH = re.compile(r"(?<![\w./~-])(?:~/|/)(?:[^\s'\"(),<>:/]+/)+")
_SITE = re.compile(r"(?<![\w.~-])(?:~|/)[^\s'\"(),<>:]*?site-packages/")
_NUMERIC_SEGMENT = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)")


def normalise(value: Any) -> Any:
    """``value`` with its volatile parts replaced: addresses become ``0x…``, absolute paths keep
    what follows ``site-packages/`` or else their last component."""
    if isinstance(value, str):
        text = _SITE.sub("", value)
        text = _ABS_PATH.sub("", text)
        return _ADDRESS.sub("0x…", text)
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def _source_file(file: str) -> str:
    """A recorded source file, comparable across machines and checkouts."""
    if "site-packages/" in file:
        return file.rsplit("site-packages/", 1)[1]
    parts = file.replace("\\", "/").split("/")
    if "tracer" in parts[:-1]:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("tracer"):])
    return parts[-1] if file.startswith(("/", "~")) else file


def _where(text: Any) -> str | None:
    """'file:line' (``defined_at`` or a SourceLocation) normalised; None when unknown."""
    if not text:
        return None
    file, _, line = str(text).rpartition(":")
    return f"{_source_file(file)}:{line}" if line.isdigit() else _source_file(str(text))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


# -- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """One fact that differs. ``a``/``b`` are JSON values (None when absent on that side)."""

    section: str
    key: str  # what: a call's place in the tree, a module path, 'model / mlp_forward', 'step 1'
    field: str  # which fact of it ('' when the whole item exists in one trace only)
    a: Any
    b: Any
    kind: Kind = "changed"

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "key": self.key, "field": self.field, "a": self.a, "b": self.b,
                "kind": self.kind}


@dataclass(frozen=True)
class CallPair:
    """One row of the aligned construction trees: a call of A, of B, or of both."""

    depth: int
    key: str
    a: int | None  # event id in A
    b: int | None
    a_label: str
    b_label: str
    changed: tuple[str, ...] = ()  # fields that differ (empty for an unchanged pair)

    def to_json(self) -> dict[str, Any]:
        return {"depth": self.depth, "key": self.key, "a": self.a, "b": self.b, "a_label": self.a_label,
                "b_label": self.b_label, "changed": list(self.changed)}


@dataclass(frozen=True)
class StepPair:
    """One generation step of each trace (None when a trace ran fewer steps)."""

    step: int
    a: Mapping[str, Any] | None
    b: Mapping[str, Any] | None
    changed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "a": None if self.a is None else dict(self.a),
                "b": None if self.b is None else dict(self.b), "changed": list(self.changed)}


@dataclass(frozen=True)
class TraceDiff:
    a_name: str
    b_name: str
    differences: tuple[Difference, ...]
    calls: tuple[CallPair, ...] = ()
    steps: tuple[StepPair, ...] = ()
    tokens: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None)
    a_meta: Mapping[str, Any] = field(default_factory=dict)
    b_meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def same(self) -> bool:
        return not self.differences

    def counts(self) -> dict[str, int]:
        """Differences per section, every section listed (0 when it agrees)."""
        out = dict.fromkeys(SECTIONS, 0)
        for d in self.differences:
            out[d.section] += 1
        return out

    def of(self, section: str) -> list[Difference]:
        return [d for d in self.differences if d.section == section]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "cogvlm-tracer-diff", "a": self.a_name, "b": self.b_name, "same": self.same,
            "counts": self.counts(), "differences": [d.to_json() for d in self.differences],
            "calls": [c.to_json() for c in self.calls], "steps": [s.to_json() for s in self.steps],
            "tokens": {"a": self.tokens[0], "b": self.tokens[1]},
        }


# -- comparing -------------------------------------------------------------------------------------

def _compare(section: str, key: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Difference]:
    """Field-by-field differences of two flat mappings (absent fields compare as None)."""
    out = []
    for name in dict.fromkeys([*a, *b]):
        va, vb = a.get(name), b.get(name)
        if va != vb:
            out.append(Difference(section, key, name, va, vb))
    return out


def _items(section: str, a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]
           ) -> list[Difference]:
    """Keyed items: present in one only, or compared field by field; A's order, then B's extras."""
    out: list[Difference] = []
    for key in dict.fromkeys([*a, *b]):
        if key not in b:
            out.append(Difference(section, key, "", _summary(a[key]), None, "only_a"))
        elif key not in a:
            out.append(Difference(section, key, "", None, _summary(b[key]), "only_b"))
        else:
            out.extend(_compare(section, key, a[key], b[key]))
    return out


def _summary(facts: Mapping[str, Any]) -> Any:
    """What a one-sided item is shown as: its headline fact."""
    for name in ("summary", "class_name", "origin"):
        if facts.get(name) is not None:
            return facts[name]
    return dict(facts)


def _meta_facts(trace: Trace) -> dict[str, Any]:
    facts = {k: normalise(v) for k, v in trace.meta.items() if k not in _META_ELSEWHERE}
    if trace.exception:  # the traceback's last line: its file paths and line numbers are volatile
        facts["exception"] = normalise(trace.exception.strip().splitlines()[-1])
    return facts


# -- construction ----------------------------------------------------------------------------------

@dataclass
class _Node:
    event: Event
    children: list[_Node]
    label: str = ""  # the alignment name: qualified name, plus the mixin for add/del_mixin
    key: str = ""  # label, numbered among same-labelled siblings


def _label(e: Event) -> str:
    d = e.data
    if d.get("function") in ("add_mixin", "del_mixin") and d.get("mixin"):
        return f"{e.name}('{d['mixin']}')"
    return e.name


def _forest(trace: Trace) -> list[_Node]:
    events = [e for e in trace.events if e.category == "construction"]
    ids = {e.id for e in events}
    nodes = {e.id: _Node(e, [], _label(e)) for e in events}
    parents = {e.id: e.parent for e in trace.events}
    roots: list[_Node] = []
    for e in sorted(events, key=lambda e: (e.start_ns, e.id)):
        parent = e.parent
        while parent is not None and parent not in ids:  # a construction call inside a module forward
            parent = parents.get(parent)
        (nodes[parent].children if parent is not None else roots).append(nodes[e.id])
    return roots


def _number(siblings: Sequence[_Node]) -> None:
    seen: dict[str, int] = {}
    for n in siblings:
        seen[n.label] = seen.get(n.label, 0) + 1
        n.key = n.label if seen[n.label] == 1 else f"{n.label}#{seen[n.label]}"


def _call_facts(e: Event) -> dict[str, Any]:
    """The comparable facts of one construction call, flattened to 'args.name', 'namespaces.args.key'."""
    d = {k: v for k, v in e.data.items() if k not in _CALL_SKIP}
    facts: dict[str, Any] = {}
    namespaces = d.pop("namespaces", None) or {}
    args = dict(d.pop("args", None) or {})
    for name in namespaces if isinstance(namespaces, Mapping) else ():
        args.pop(name, None)  # the Namespace's keys below say the same, one by one
    _flatten("args", normalise(args), facts)
    _flatten("namespaces", normalise(namespaces), facts)
    if isinstance(d.get("result"), str) and str(d["result"]).startswith("Namespace(") and namespaces:
        d.pop("result")  # a get_args result: its keys are in namespaces when they matter
    for name, value in d.items():
        if name == "defined_at":
            facts[name] = _where(value)
        else:
            _flatten(name, normalise(value), facts)
    before, after = e.data.get("params_before"), e.data.get("params_after")
    if isinstance(before, int) and isinstance(after, int):
        facts["param_delta"] = after - before
    hb, ha = e.data.get("hooks_before"), e.data.get("hooks_after")
    if isinstance(hb, Mapping) and isinstance(ha, Mapping):
        facts["hook_changes"] = _hook_changes(hb, ha)
    facts["called_from"] = _where(e.source) if e.source is not None else None
    if e.error:
        facts["error"] = normalise(e.error)
    return {k: v for k, v in facts.items() if v not in (None, {}, "")}


def _hook_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Every hook whose origin the call changed, 'mlp_forward: mlp → default' (absent = SAT's default)."""
    return [f"{h}: {before.get(h, 'default')} → {after.get(h, 'default')}"
            for h in sorted(set(before) | set(after)) if before.get(h, "default") != after.get(h, "default")]


class _Aligner:
    def __init__(self) -> None:
        self.pairs: list[CallPair] = []
        self.differences: list[Difference] = []

    def one_side(self, node: _Node, depth: int, path: str, side: Kind, *, top: bool = True) -> None:
        """A call (and everything inside it) in one trace only: one difference for the subtree,
        one aligned row per call."""
        key = f"{path} / {node.key}" if path else node.key
        label = _call_text(node.event)
        a, b = (node.event.id, None) if side == "only_a" else (None, node.event.id)
        self.pairs.append(CallPair(depth, key, a, b, label if a is not None else "", label if b is not None else ""))
        if top:
            inside = _count(node) - 1
            text = label + (f" (+{inside} call{'s' if inside > 1 else ''} inside)" if inside else "")
            self.differences.append(Difference("construction", key, "", text if a is not None else None,
                                               text if b is not None else None, side))
        _number(node.children)
        for child in node.children:
            self.one_side(child, depth + 1, key, side, top=False)

    def both(self, x: _Node, y: _Node, depth: int, path: str) -> None:
        key = f"{path} / {x.key}" if path else x.key
        found = _compare("construction", key, _call_facts(x.event), _call_facts(y.event))
        self.differences.extend(found)
        self.pairs.append(CallPair(depth, key, x.event.id, y.event.id, _call_text(x.event), _call_text(y.event),
                                   tuple(d.field for d in found)))
        self.siblings(x.children, y.children, depth + 1, key)

    def siblings(self, xs: list[_Node], ys: list[_Node], depth: int, path: str) -> None:
        _number(xs)
        _number(ys)
        matcher = difflib.SequenceMatcher(a=[n.key for n in xs], b=[n.key for n in ys], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for x, y in zip(xs[i1:i2], ys[j1:j2], strict=True):
                    self.both(x, y, depth, path)
            else:
                self.unmatched(xs[i1:i2], ys[j1:j2], depth, path)

    def unmatched(self, xs: list[_Node], ys: list[_Node], depth: int, path: str) -> None:
        """Calls without a same-named partner: a wrapper one side adds (its children align with
        the other side's calls here), else present in one trace only."""
        ys_keys = {n.key for n in ys}
        xs_keys = {n.key for n in xs}
        for y in ys:  # B wraps what A calls directly
            _number(y.children)
            if y.children and xs and {c.key for c in y.children} & xs_keys:
                self.wrapper(y, "only_b", depth, path)
                inner = f"{path} / {y.key}" if path else y.key
                self.siblings(xs, y.children, depth + 1, inner)
                rest = [n for n in ys if n is not y]
                for n in rest:
                    self.one_side(n, depth, path, "only_b")
                return
        for x in xs:  # A wraps what B calls directly
            _number(x.children)
            if x.children and ys and {c.key for c in x.children} & ys_keys:
                self.wrapper(x, "only_a", depth, path)
                inner = f"{path} / {x.key}" if path else x.key
                self.siblings(x.children, ys, depth + 1, inner)
                for n in xs:
                    if n is not x:
                        self.one_side(n, depth, path, "only_a")
                return
        for x in xs:
            self.one_side(x, depth, path, "only_a")
        for y in ys:
            self.one_side(y, depth, path, "only_b")

    def wrapper(self, node: _Node, side: Kind, depth: int, path: str) -> None:
        key = f"{path} / {node.key}" if path else node.key
        label = _call_text(node.event)
        a, b = (node.event.id, None) if side == "only_a" else (None, node.event.id)
        self.pairs.append(CallPair(depth, key, a, b, label if a is not None else "", label if b is not None else ""))
        self.differences.append(Difference("construction", key, "", label if a is not None else None,
                                           label if b is not None else None, side))


def _count(node: _Node) -> int:
    return 1 + sum(_count(c) for c in node.children)


def _call_text(e: Event) -> str:
    d = e.data
    if d.get("function") == "add_mixin" and d.get("mixin_class"):
        return f"{_label(e)[:-1]}, {d['mixin_class']})"
    return _label(e)


# -- hooks, modules, shapes -------------------------------------------------------------------------

def _hook_table(trace: Trace) -> dict[str, dict[str, Any]]:
    """Per model and hook: who serves it and how often it ran. The serving mixin's class comes
    from the dispatches, else from the last ``add_mixin`` of that name on that model (a
    construction-only trace has no dispatches, and 'mlp' may be LLaMA's or CogVLM's mixin)."""
    from .render.hooks import hook_rows, model_key

    added: dict[tuple[str, str], str] = {}
    for e in trace.of("construction"):
        d = e.data
        if d.get("function") == "add_mixin" and d.get("mixin") and d.get("mixin_class"):
            where = model_key(trace, str(d.get("owner") or ""), str(d.get("model_path") or ""))
            added[(where, str(d["mixin"]))] = str(d["mixin_class"])
    out: dict[str, dict[str, Any]] = {}
    for r in hook_rows(trace):
        served = r.origin.split(" -> ")[0]
        out[f"{r.model_path or 'model'} / {r.hook}"] = {
            "origin": r.origin, "mixin_class": r.mixin_class or added.get((r.model_path, served)),
            "dispatches": r.dispatches, "layers": r.layers or None}
    return out


def _subtrees(diffs: list[Difference]) -> list[Difference]:
    """A module present in one trace only stands for its submodules too: 'ImageMixin (+45 inside)'."""
    one_sided = {(d.key, d.kind) for d in diffs if d.kind != "changed"}
    inside: dict[tuple[str, str], int] = {}
    tops: list[Difference] = []
    for d in diffs:
        if d.kind == "changed":
            tops.append(d)
            continue
        parts = d.key.split(".")
        owner = next(((".".join(parts[:i]), d.kind) for i in range(1, len(parts))
                      if (".".join(parts[:i]), d.kind) in one_sided), None)
        if owner is None:
            tops.append(d)
        else:
            inside[owner] = inside.get(owner, 0) + 1
    out = []
    for d in tops:
        n = inside.get((d.key, d.kind), 0)
        if n:
            value = f"{d.a if d.kind == 'only_a' else d.b} (+{n} module{'s' if n > 1 else ''} inside)"
            d = Difference(d.section, d.key, d.field, value if d.kind == "only_a" else None,
                           value if d.kind == "only_b" else None, d.kind)
        out.append(d)
    return out


def _module_table(trace: Trace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in trace.modules:
        facts: dict[str, Any] = {"class_name": m.class_name}
        for name, shape in m.param_shapes.items():
            facts[f"param {name}"] = list(shape)
        out[m.path or "(root)"] = facts
    return out


def _shapes(infos: Any) -> str | None:
    from .render.common import shapes_text

    return shapes_text(infos if isinstance(infos, list) else [infos], limit=99) or None


def _shape_table(trace: Trace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in sorted(trace.events, key=lambda e: (e.start_ns, e.id)):
        if e.category == "module":
            key = f"module {e.data.get('path', e.name) or '(root)'}"
        elif e.category == "hook":
            key = f"hook {e.data.get('hook', e.name)} @ {e.data.get('layer_path') or e.data.get('model_path') or 'model'}"
        else:
            continue
        if key in out:
            out[key]["calls"] += 1
            continue
        facts: dict[str, Any] = {"calls": 1, "inputs": _shapes(e.data.get("inputs")),
                                 "outputs": _shapes(e.data.get("outputs"))}
        if e.category == "module":
            kwargs = e.data.get("kwargs") or {}
            for name in sorted(kwargs):
                facts[f"kwarg {name}"] = _shapes(kwargs[name])
        else:
            facts["served_by"] = e.data.get("served_by")
            facts["mixin_class"] = e.data.get("mixin_class")
            facts["weights"] = list(e.data.get("weights") or []) or None
            branch = e.data.get("branch")
            if isinstance(branch, Mapping):
                facts["vision_expert"] = branch.get("vision_expert")
        out[key] = facts
    return out


# -- generation and tokens ------------------------------------------------------------------------

def _steps(trace: Trace) -> list[dict[str, Any]]:
    from .render.steps import step_rows

    return [{"phase": r.phase, "tokens_fed": r.tokens_fed, "sequence_length": r.sequence_length, "mems": r.mems,
             "sampled_token": r.sampled_token, "piece": r.piece or None, "module_calls": r.modules,
             "hook_calls": r.hooks, "vision_tokens": r.vision_tokens} for r in step_rows(trace)]


def _runs(values: Sequence[int]) -> str:
    """Positions where a 0/1 mask is 1, as ranges: '1–1227' ('' for none)."""
    out, start = [], None
    for i, v in enumerate([*values, 0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append(str(start) if i - 1 == start else f"{start}–{i - 1}")
            start = None
    return ", ".join(out)


def _folded(values: Iterable[Any]) -> str:
    """'0 1 2×1225 3–19': a run of one value becomes value×count, a run of 3+ consecutive
    integers first–last."""
    out: list[str] = []
    items = list(values)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[i]:
            j += 1
        if j > i:
            out.append(f"{items[i]}×{j - i + 1}")
            i = j + 1
            continue
        while (j + 1 < len(items) and isinstance(items[j], int) and isinstance(items[j + 1], int)
               and items[j + 1] == items[j] + 1 and (j + 2 >= len(items) or items[j + 2] != items[j + 1])):
            j += 1
        out.append(f"{items[i]}–{items[j]}" if j - i >= 2 else " ".join(str(x) for x in items[i:j + 1]))
        i = j + 1
    return " ".join(out)


def _tokens(trace: Trace) -> dict[str, Any] | None:
    layout = trace.meta.get("token_layout")
    if not isinstance(layout, Mapping) or not layout.get("tokens"):
        return None
    return {
        "positions": len(layout["tokens"]),
        "pieces": _folded(layout.get("pieces") or []),
        "image_embed_mask": _runs([int(x) for x in layout.get("image_embed_mask") or []]),
        "vision_expert_mask": _runs([int(x) for x in layout.get("vision_expert_mask") or []]),
        "image_rope_mask": _runs([int(x) for x in layout.get("image_rope_mask") or []]),
        "position_ids": _folded(layout.get("position_ids") or []),
    }


# -- the whole diff ---------------------------------------------------------------------------------

def diff_traces(a: Trace, b: Trace, *, a_name: str = "A", b_name: str = "B") -> TraceDiff:
    """Every difference between ``a`` and ``b`` that is not volatile, in :data:`SECTIONS` order."""
    differences: list[Difference] = []
    differences += _compare("meta", "meta", _meta_facts(a), _meta_facts(b))

    aligner = _Aligner()
    aligner.siblings(_forest(a), _forest(b), 0, "")
    differences += aligner.differences

    differences += _items("hooks", _hook_table(a), _hook_table(b))
    differences += _subtrees(_items("modules", _module_table(a), _module_table(b)))
    differences += _items("shapes", _shape_table(a), _shape_table(b))

    steps_a, steps_b = _steps(a), _steps(b)
    steps = []
    for i in range(max(len(steps_a), len(steps_b))):
        sa = steps_a[i] if i < len(steps_a) else None
        sb = steps_b[i] if i < len(steps_b) else None
        key = "context" if i == 0 else f"step {i}"
        if sa is None or sb is None:
            kind: Kind = "only_b" if sa is None else "only_a"
            differences.append(Difference("generation", key, "", sa, sb, kind))
            steps.append(StepPair(i, sa, sb, ("",)))
        else:
            found = _compare("generation", key, sa, sb)
            differences += found
            steps.append(StepPair(i, sa, sb, tuple(d.field for d in found)))

    tokens_a, tokens_b = _tokens(a), _tokens(b)
    if tokens_a is not None and tokens_b is not None:
        differences += _compare("tokens", "layout", tokens_a, tokens_b)
    elif (tokens_a is None) != (tokens_b is None):
        differences.append(Difference("tokens", "layout", "", tokens_a, tokens_b,
                                      "only_a" if tokens_b is None else "only_b"))

    return TraceDiff(a_name, b_name, tuple(differences), tuple(aligner.pairs), tuple(steps),
                     (tokens_a, tokens_b), dict(a.meta), dict(b.meta))


def fold_key(key: str) -> str:
    """'transformer.layers.1.mlp' -> 'transformer.layers.*.mlp': differences that agree except
    for a layer number are shown once (see :func:`fold_differences`)."""
    return _NUMERIC_SEGMENT.sub("*", key)


def fold_differences(diffs: Sequence[Difference]) -> list[tuple[str, int, Difference]]:
    """Groups of differences equal up to numbered path segments: (shown key, count, first)."""
    groups: dict[tuple[str, str, str, str, str], list[Difference]] = {}
    for d in diffs:
        ident = (d.section, fold_key(d.key), d.field, repr(d.a), repr(d.b))
        groups.setdefault(ident, []).append(d)
    out = []
    for (_, folded, _, _, _), members in groups.items():
        out.append((members[0].key if len(members) == 1 else folded, len(members), members[0]))
    return out
