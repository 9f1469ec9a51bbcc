"""Helpers every view shares: number and shape formatting, the event tree, source links.

Kept free of rich, graphviz and Pillow so that each view pays only for the library it draws
with, and free of torch and SAT so that a saved trace renders on any machine.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..schema import Event, SourceLocation, shape_text

__all__ = [
    "HOOK_NAMES",
    "children_index",
    "count_text",
    "delta_text",
    "descendants",
    "duration_text",
    "fold_numeric",
    "human_count",
    "recorded_note",
    "step_span",
    "summary_steps",
    "resolve_source",
    "shape_of",
    "shapes_text",
    "short_path",
    "source_text",
    "vscode_link",
]

# SAT 0.4.12's nine extension points, in the order of ``sat.transformer_defaults.HOOKS_DEFAULT``.
# Copied as data (not imported) because renderers must not import SAT; a hook absent from a
# model's ``hook_origins`` runs SAT's default implementation.
HOOK_NAMES: tuple[str, ...] = (
    "attention_fn", "attention_forward", "cross_attention_forward", "routing_forward", "mlp_forward",
    "word_embedding_forward", "position_embedding_forward", "final_forward", "layer_forward",
)


def human_count(n: int) -> str:
    """17639685376 -> '17.64 B'; 644000 -> '644.0 K'; 64 -> '64'."""
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}" if unit == "B" else f"{n / size:.1f} {unit}"
    return str(n)


def count_text(n: int) -> str:
    """Exact count with thousands separators: parameters are facts a learner checks."""
    return f"{n:,}"


def delta_text(before: int | None, after: int | None) -> str:
    """'+180,832 params' for a mixin that brought weights, '' when nothing changed or unknown."""
    if before is None or after is None or before == after:
        return ""
    return f"{after - before:+,} params"


def duration_text(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms" if ns < 10**9 else f"{ns / 1e9:.2f} s"


def shape_of(info: Any) -> tuple[int, ...] | None:
    """The shape of a TensorInfo JSON object, or None for a non-tensor slot."""
    if isinstance(info, Mapping) and isinstance(info.get("shape"), Sequence):
        return tuple(int(s) for s in info["shape"])
    return None


def _one_shape(info: Any) -> str:
    shape = shape_of(info)
    if shape is None:
        return "·"
    text = shape_text(shape)
    dtype = info.get("dtype", "float32") if isinstance(info, Mapping) else "float32"
    return text if dtype in ("float32", "") else f"{text} {dtype}"


def shapes_text(infos: Iterable[Any] | None, *, limit: int = 3) -> str:
    """'[1, 1235, 64]' for one tensor, '[1, 1235, 64], [1, 1, 1235, 1235]' for several; non-tensor
    slots show as '·'; trailing non-tensors are dropped (they are usually None defaults)."""
    items = list(infos or [])
    while items and shape_of(items[-1]) is None:
        items.pop()
    if not items:
        return ""
    parts = [_one_shape(i) for i in items[:limit]]
    if len(items) > limit:
        parts.append(f"… +{len(items) - limit}")
    return ", ".join(parts)


# -- the event tree ----------------------------------------------------------------------------

def children_index(events: Iterable[Event]) -> dict[int | None, list[Event]]:
    """parent id -> children in call order. Events whose parent was filtered out of the trace
    (a depth filter) hang from the root so that nothing silently disappears."""
    events = list(events)
    ids = {e.id for e in events}
    index: dict[int | None, list[Event]] = {}
    for e in events:
        parent = e.parent if e.parent in ids else None
        index.setdefault(parent, []).append(e)
    for kids in index.values():
        kids.sort(key=lambda e: (e.start_ns, e.id))
    return index


def descendants(index: Mapping[int | None, list[Event]], root: Event) -> list[Event]:
    """Every event that ran inside ``root`` (any category), in call order; ``index`` is
    :func:`children_index` of the trace's events, built once by the caller."""
    out: list[Event] = []
    stack = list(reversed(index.get(root.id, [])))
    while stack:
        e = stack.pop()
        out.append(e)
        stack.extend(reversed(index.get(e.id, [])))
    return out


_NUMERIC = re.compile(r"^\d+$")


def fold_numeric(names: Sequence[str]) -> str:
    """['0', '1', …, '31'] -> '0–31' (en dash) when consecutive, else '0, 2, 5'."""
    if not names:
        return ""
    if all(_NUMERIC.match(n) for n in names):
        nums = sorted(int(n) for n in names)
        if nums == list(range(nums[0], nums[0] + len(nums))):
            return f"{nums[0]}–{nums[-1]}" if len(nums) > 1 else str(nums[0])
        return ", ".join(str(n) for n in nums)
    return ", ".join(names)


# -- source locations ------------------------------------------------------------------------

def short_path(file: str) -> str:
    """A path as a reader wants to see it: 'sat/model/base_model.py' rather than the
    virtualenv's absolute path; files under the working folder relative to it."""
    marker = "site-packages/"
    if marker in file:
        return file.rsplit(marker, 1)[1]
    path = Path(file)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return file
    return file


def source_text(loc: SourceLocation | str | None) -> str:
    """'sat/model/base_model.py:420' (shortened with :func:`short_path`); '' for None."""
    if loc is None:
        return ""
    file, line = _split(loc)
    return f"{short_path(file)}:{line}" if line else short_path(file)


def _split(loc: SourceLocation | str) -> tuple[str, int]:
    if isinstance(loc, SourceLocation):
        return loc.file, loc.line
    file, _, line = str(loc).rpartition(":")
    return (file, int(line)) if line.isdigit() else (str(loc), 0)


@lru_cache(maxsize=8)
def _package_root(name: str) -> Path | None:
    """The folder that holds package ``name`` — found without importing it (find_spec of a
    top-level package reads the file system only), so SAT stays out of the renderers."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def resolve_source(loc: SourceLocation | str | None, roots: Sequence[str] = ()) -> tuple[str, int] | None:
    """An absolute path and line for a recorded location, when the file exists here.

    Traces may record paths relative to the repository or to site-packages
    (``sat/model/base_model.py``); we look them up under the given roots, the working folder
    and the folders holding the ``tracer`` and ``sat`` packages."""
    if loc is None:
        return None
    file, line = _split(loc)
    if not file:
        return None
    path = Path(file)
    if path.is_absolute():
        return (str(path), line) if path.exists() else None
    candidates = [Path(r) for r in roots] + [Path.cwd()]
    candidates += [p for p in (_package_root("tracer"), _package_root("sat")) if p is not None]
    for root in candidates:
        full = root / path
        if full.exists():
            return str(full.resolve()), line
    return None


def vscode_link(loc: SourceLocation | str | None, roots: Sequence[str] = ()) -> str | None:
    """``vscode://file/ABS_PATH:LINE`` — opens the file at the line in VS Code from a browser."""
    found = resolve_source(loc, roots)
    if found is None:
        return None
    path, line = found
    return f"vscode://file{path if path.startswith('/') else '/' + path}:{line}"


def has_token_split(trace: Any) -> bool:
    """Whether the trace's model adapter recorded a token split per hook dispatch (``branch``:
    CogVLM's vision/language experts). Views show split columns only then."""
    return any("branch" in e.data for e in trace.of("hook"))


def summary_steps(trace: Any) -> list[int]:
    """The numbers of the generation steps recorded as step summaries (beyond ``max_steps``)."""
    return [int(e.data.get("step", 0)) for e in trace.of("generation") if e.data.get("detail") == "summary"]


def step_span(steps: Sequence[int]) -> str:
    """'5' or '5–23' (first–last) for a run of step numbers."""
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"


def recorded_note(trace: Any) -> str:
    """'' when every generation step was recorded in full; otherwise one line saying the call
    and dispatch counts cover the full steps only (later ones are step summaries)."""
    summaries = summary_steps(trace)
    if not summaries:
        return ""
    return (f"counts cover the calls recorded: generation steps {step_span(summaries)} ran as step summaries, "
            "their calls not recorded (--max-steps all records every step)")
