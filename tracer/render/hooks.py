"""The hook tables: who serves each of SAT's nine hooks, how mixins changed that, how often it ran.

SAT's ``collect_hooks_`` resolves every hook to the last mixin that defines it (or chains
``non_conflict`` ones: ``"auto-regressive -> default"``) and records the result in
``hook_origins``. We show that table per model (CogVLM's own and the EVA tower's, which is a
``BaseModel`` of its own), the sequence of ``add_mixin``/``del_mixin`` calls that produced
it, and the dispatches recorded at run time — which no forward-hook tool can see, because a
SAT hook is a plain function call, not a module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from ..schema import Trace
from .calls import hook_changes
from .common import HOOK_NAMES, delta_text, fold_numeric, has_token_split, recorded_note

__all__ = ["HookRow", "MixinChange", "hook_rows", "mixin_changes", "render_hooks"]


@dataclass(frozen=True)
class HookRow:
    model_path: str  # '' for the root model, 'mixins.eva.vit_model' for the vision tower
    hook: str
    origin: str  # 'default', 'model', 'mlp', 'auto-regressive -> default'
    mixin_class: str
    dispatches: int
    layers: str  # '0–31' or ''
    vision_tokens: int  # summed over dispatches that took the vision-expert branch
    language_tokens: int


@dataclass(frozen=True)
class MixinChange:
    order: int
    call: str  # "add_mixin('mlp', LlamaVisionExpertFCMixin)"
    model: str  # 'CogVLMModel' or 'EVA2CLIPModel at mixins.eva.vit_model'
    params: str
    changes: tuple[str, ...]


def model_key(trace: Trace, owner: str, model_path: str) -> str:
    """Where a model sits in the tree. A nested model (the EVA tower) is constructed before it
    is attached, so its construction events may carry model_path '' and only its class: then
    we find the class in the module tree, when it occurs there once."""
    if model_path:
        return model_path
    root = next((m.class_name for m in trace.modules if m.path == ""), "")
    if not owner or owner == root:
        return ""
    paths = [m.path for m in trace.modules if m.class_name == owner]
    return paths[0] if len(paths) == 1 else owner


def _final_tables(trace: Trace) -> dict[str, Mapping[str, str]]:
    """model path -> its final hook_origins: the root's from ``Trace.hooks``, nested models'
    from their last add_mixin/del_mixin (the tracer records hooks_after for each)."""
    tables: dict[str, Mapping[str, str]] = {}
    for e in trace.of("construction"):
        if e.data.get("function") in ("add_mixin", "del_mixin") and isinstance(e.data.get("hooks_after"), Mapping):
            key = model_key(trace, str(e.data.get("owner") or ""), str(e.data.get("model_path") or ""))
            tables[key] = e.data["hooks_after"]
    if trace.hooks or "" not in tables:
        tables[""] = dict(trace.hooks)
    return tables


def hook_rows(trace: Trace, *, all_hooks: bool = True) -> list[HookRow]:
    """One row per (model, hook): the root model first, then nested models by path."""
    tables = _final_tables(trace)
    dispatch: Counter[tuple[str, str]] = Counter()
    layers: dict[tuple[str, str], set[str]] = {}
    tokens: Counter[tuple[str, str, str]] = Counter()
    classes: dict[tuple[str, str], str] = {}
    by_id = trace.by_id()
    for e in trace.of("hook"):
        key = (str(e.data.get("model_path", "")), str(e.data.get("hook", e.name)))
        parent = by_id.get(e.parent) if e.parent is not None else None
        if parent is not None and parent.category == "hook" and parent.name == e.name:
            continue  # the next link of a chain ("auto-regressive -> default") is the same dispatch
        dispatch[key] += 1
        if e.data.get("layer_id") is not None:
            layers.setdefault(key, set()).add(str(e.data["layer_id"]))
        branch = e.data.get("branch") or {}
        tokens[(*key, "vision")] += int(branch.get("vision_tokens", 0) or 0)
        tokens[(*key, "language")] += int(branch.get("language_tokens", 0) or 0)
        if e.data.get("mixin_class"):
            classes.setdefault(key, str(e.data["mixin_class"]))
    for model_path, _ in dispatch:
        tables.setdefault(model_path, {})
    rows = []
    for model_path in sorted(tables):
        table = tables[model_path]
        names = [h for h in HOOK_NAMES if all_hooks or h in table or (model_path, h) in dispatch]
        names += sorted(h for h in table if h not in HOOK_NAMES)
        for hook in names:
            key = (model_path, hook)
            rows.append(HookRow(model_path, hook, table.get(hook, "default"), classes.get(key, ""),
                                dispatch[key], fold_numeric(sorted(layers.get(key, ()))),
                                tokens[(*key, "vision")], tokens[(*key, "language")]))
    return rows


def mixin_changes(trace: Trace) -> list[MixinChange]:
    """Every add_mixin/del_mixin in call order, with what it did to the hook table."""
    from .calls import call_label

    out = []
    events = sorted((e for e in trace.of("construction") if e.data.get("function") in ("add_mixin", "del_mixin")),
                    key=lambda e: (e.start_ns, e.id))
    for i, e in enumerate(events, 1):
        d = e.data
        where = model_key(trace, str(d.get("owner") or ""), str(d.get("model_path") or ""))
        model = str(d.get("owner") or where or "?")
        params = delta_text(d.get("params_before"), d.get("params_after")).removesuffix(" params")
        out.append(MixinChange(i, call_label(e, short=True), model, params,
                               tuple(hook_changes(d.get("hooks_before"), d.get("hooks_after")))))
    return out


def render_hooks(trace: Trace, *, width: int = 140, styles: bool = False) -> str:
    from rich.table import Table

    from .terminal import export_text

    parts: list[object] = []
    rows = hook_rows(trace)
    split = has_token_split(trace)
    for model_path in dict.fromkeys(r.model_path for r in rows):
        title = "model" if not model_path else model_path
        table = Table(title=f"SAT hook table of {title} (hook_origins; 'default' = SAT's built-in implementation)",
                      title_justify="left", header_style="bold", show_edge=False, box=None, pad_edge=False)
        for name, justify in (("hook", "left"), ("served by", "left"), ("mixin class", "left"),
                              ("dispatches", "right"), ("layers", "left"),
                              *([("vision / language tokens", "right")] if split else [])):
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for r in rows:
            if r.model_path != model_path:
                continue
            toks = f"{r.vision_tokens:,} / {r.language_tokens:,}" if r.vision_tokens or r.language_tokens else ""
            style = "dim" if r.origin == "default" and not r.dispatches else ""
            table.add_row(r.hook, r.origin, r.mixin_class, str(r.dispatches) if r.dispatches else "",
                          r.layers, *([toks] if split else []), style=style)
        parts += [table, ""]

    changes = mixin_changes(trace)
    history = Table(title="How add_mixin / del_mixin changed the hook tables (in call order)",
                    title_justify="left", header_style="bold", show_edge=False, box=None, pad_edge=False)
    history.add_column("#", justify="right")
    history.add_column("call", no_wrap=True)
    history.add_column("on", no_wrap=True)
    history.add_column("params", justify="right", no_wrap=True)
    history.add_column("hook changes", ratio=1)
    for c in changes:
        history.add_row(str(c.order), c.call, c.model, c.params, "\n".join(c.changes) or "·")
    parts.append(history if changes else "(no add_mixin/del_mixin calls in this trace)")
    note = recorded_note(trace)
    if note:
        parts.insert(0, note)
    return export_text(parts, width=width, styles=styles)
