"""Count what a tool's *output* says about a SAT model: parsers for each peer's files.

Every count here is read from the file the tool wrote (a summary table, a DOT graph, a CSV
of operations, a Chrome trace, our ``trace.json``), never assumed from the tool's
documentation. The questions, the same for every tool:

* **module entries** — how many module calls or module rows the output lists;
* **module paths** — how many distinct module paths (``transformer.layers.0.mlp``,
  ``mixins.mlp.vision_dense_h_to_4h_list.0``) it names;
* **hook dispatches** — calls of SAT's hook functions (``mlp_forward``, ``attention_fn``, …,
  or their ``*_default`` fallbacks) it records;
* **hook → mixin** — of those, how many name the mixin that served the call;
* **construction calls** — calls of SAT's construction API (``get_model``, ``add_mixin``, …).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tracer.render.common import HOOK_NAMES  # SAT's nine extension points (no torch, no SAT import)

__all__ = ["CONSTRUCTION_NAMES", "HOOK_NAMES", "Capture", "count_ours", "count_torchinfo", "count_torchlens",
           "count_torchview", "count_viztracer", "module_paths"]

# SAT's construction API (issue 4, item 1).
CONSTRUCTION_NAMES = ("get_args", "update_args_with_file", "overwrite_args_by_dict", "get_model", "add_mixin",
                      "del_mixin", "from_pretrained", "from_pretrained_base", "load_checkpoint")

_HOOK_FUNCS = frozenset(HOOK_NAMES) | {f"{h}_default" for h in HOOK_NAMES}
_HOOK_WORD = re.compile(r"\b(?:" + "|".join(HOOK_NAMES) + r")(?:_default)?\b")
_CONSTRUCTION_WORD = re.compile(r"\b(?:" + "|".join(CONSTRUCTION_NAMES) + r")\b")
# Module paths of a CogVLM model: everything hangs under `transformer` or `mixins`.
_PATH = re.compile(r"\b(?:transformer|mixins)(?:\.[A-Za-z_0-9-]+)+")


@dataclass
class Capture:
    module_entries: int = 0
    module_paths: int = 0
    hook_dispatches: int = 0
    hooks_with_mixin: int = 0
    construction_calls: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def module_paths(text: str) -> set[str]:
    """Distinct CogVLM module paths named in ``text`` (pass suffixes such as ``:1`` dropped,
    source file names such as ``transformer.py`` ignored)."""
    return {p for p in _PATH.findall(text) if not p.endswith(".py")}


def _words(text: str) -> tuple[int, int]:
    return len(_HOOK_WORD.findall(text)), len(_CONSTRUCTION_WORD.findall(text))


# ---------------------------------------------------------------------------------------------
# torchinfo: the summary table


_TORCHINFO_ROW = re.compile(r"^[│ ]*[├└]─(?P<cls>[A-Za-z_][\w.]*)(?:: (?P<depth>\d+)-(?P<idx>\d+))?", re.M)
_TORCHINFO_TOTAL = re.compile(r"^Total params: ([\d,]+)", re.M)


def count_torchinfo(text: str, mixin_classes: Iterable[str], true_parameters: int) -> Capture:
    rows = _TORCHINFO_ROW.findall(text)
    mixins = set(mixin_classes)
    hooks, construction = _words(text)
    cap = Capture(module_entries=len(rows), module_paths=len(module_paths(text)), hook_dispatches=hooks,
                  construction_calls=construction)
    mixin_rows = sum(1 for cls, _, _ in rows if cls in mixins)
    cap.notes.append(f"{mixin_rows} rows are mixins, shown as weight containers (class names, no hook or layer)")
    total = _TORCHINFO_TOTAL.search(text)
    if total:
        reported = int(total.group(1).replace(",", ""))
        verdict = "matches" if reported == true_parameters else f"model has {true_parameters:,}"
        cap.notes.append(f"'Total params: {reported:,}' ({verdict})")
    return cap


# ---------------------------------------------------------------------------------------------
# torchview: the DOT source of the graph

_DOT_NODE = re.compile(r"<TD[^>]*>(?P<name>[^<]*)<BR/>depth:\d+</TD>.*?fillcolor=(?P<color>\w+)", re.S)
# torchview's node colours (torchview/computation_graph.py): modules, functions, tensors.
_TORCHVIEW_KINDS = {"darkseagreen1": "module", "aliceblue": "function", "lightyellow": "tensor"}


def count_torchview(dot: str, mixin_classes: Iterable[str]) -> Capture:
    kinds: Counter[str] = Counter()
    names: Counter[str] = Counter()
    for m in _DOT_NODE.finditer(dot):
        kind = _TORCHVIEW_KINDS.get(m.group("color"), "other")
        kinds[kind] += 1
        if kind == "module":
            names[m.group("name")] += 1
    hooks, construction = _words(dot)
    mixins = set(mixin_classes)
    cap = Capture(module_entries=kinds["module"], module_paths=len(module_paths(dot)), hook_dispatches=hooks,
                  construction_calls=construction)
    cap.notes.append(f"{kinds['function']} function nodes, {kinds['tensor']} tensor nodes; "
                     f"{sum(v for k, v in names.items() if k in mixins)} module nodes are mixins")
    return cap


# ---------------------------------------------------------------------------------------------
# torchlens: the per-operation table (Trace.to_pandas() written as CSV)


def count_torchlens(csv_text: str) -> Capture:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(csv_text))
    ops = 0
    modules: set[str] = set()
    calls: set[str] = set()
    in_mixins = 0
    hook_rows = 0
    construction_rows = 0
    for row in reader:
        ops += 1
        call = row.get("module") or ""  # 'path:pass', the innermost module the operation ran in
        module = call.split(":")[0]
        if module:
            calls.add(call)
            modules.add(module)
            in_mixins += module.startswith("mixins.") and ".vit_model." not in module
        text = " ".join(v for v in row.values() if isinstance(v, str))
        hook_rows += bool(_HOOK_WORD.search(text))
        construction_rows += bool(_CONSTRUCTION_WORD.search(text))
    cap = Capture(module_entries=len(calls), module_paths=len(module_paths(" ".join(modules))),
                  hook_dispatches=hook_rows, construction_calls=construction_rows)
    cap.notes.append(f"{ops} tensor operations; {in_mixins} ran in modules under `mixins.*` outside the vision "
                     f"tower (weights' owner named, not the hook or the layer served)")
    return cap


# ---------------------------------------------------------------------------------------------
# viztracer: Chrome trace events of every Python call


def _qualname(event_name: str) -> str:
    """'LlamaVisionExpertFCMixin.mlp_forward (/path/mixins.py:176)' -> 'LlamaVisionExpertFCMixin.mlp_forward'."""
    return event_name.split(" (", 1)[0]


def count_viztracer(data: Mapping[str, Any], mixin_classes: Iterable[str]) -> Capture:
    events = [e for e in data.get("traceEvents", []) if e.get("ph") == "X"]
    mixins = set(mixin_classes)
    module_calls = hooks = with_mixin = construction = 0
    names = []
    for e in events:
        qual = _qualname(str(e.get("name", "")))
        names.append(qual)
        owner, _, func = qual.rpartition(".")
        if qual == "Module._call_impl":
            module_calls += 1
        if func in _HOOK_FUNCS:
            hooks += 1
            with_mixin += owner in mixins
        if func in CONSTRUCTION_NAMES:
            construction += 1
    # Paths are looked for in the events only: viztracer also embeds the source files it saw.
    cap = Capture(module_entries=module_calls, module_paths=len(module_paths(" ".join(names))),
                  hook_dispatches=hooks, hooks_with_mixin=with_mixin, construction_calls=construction)
    cap.notes.append(f"{len(events):,} call events; module calls are anonymous `Module._call_impl` frames; "
                     "hook dispatches are calls of functions named like SAT hooks (direct calls of a "
                     "`*_default` from a mixin count too); a hook's mixin appears only as the class in the "
                     "function's qualified name, without the mixin's key, the layer or the weights used")
    return cap


# ---------------------------------------------------------------------------------------------
# cogvlm-tracer: trace.json


def count_ours(data: Mapping[str, Any]) -> Capture:
    events = list(data.get("events", []))
    by_cat = Counter(str(e.get("category")) for e in events)
    paths = {str(e.get("name")) for e in events if e.get("category") == "module"}
    hooks = [e for e in events if e.get("category") == "hook"]
    with_mixin = sum(1 for e in hooks if _served_by(e.get("data") or {}))
    cap = Capture(module_entries=by_cat["module"], module_paths=len(module_paths(" ".join(paths))),
                  hook_dispatches=len(hooks), hooks_with_mixin=with_mixin,
                  construction_calls=by_cat["construction"])
    cap.notes.append(f"{by_cat['generation']} generation events; each hook event names the mixin, layer and "
                     "weights' module path")
    return cap


def _served_by(data: Mapping[str, Any]) -> bool:
    """Whether a hook event names the mixin that served it (schema key ``mixin``, or ``served_by``)."""
    return any(data.get(key) not in (None, "", "default") for key in ("mixin", "served_by"))
