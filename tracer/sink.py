"""The event sink: what the construction patches and the runtime hooks write into.

The :class:`Recorder` is shared by :mod:`tracer.construction` and :mod:`tracer.runtime`.
Events are kept as small mutable records while the code runs (one list append per call) and
frozen into :class:`tracer.schema.Event` objects once, by :meth:`Recorder.build`. This module
knows nothing of sessions, files or patches (that is :mod:`tracer.session`), so the patch
modules depend on it and nothing depends back on them.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .schema import DEFAULT_CATEGORIES, Category, Event, ModuleNode, SourceLocation, Trace

__all__ = ["Record", "Recorder", "module_tree"]


@dataclass
class Record:
    """One event while it is being recorded; frozen into an :class:`Event` at the end."""

    id: int
    parent: int | None
    category: Category
    name: str
    start_ns: int
    data: dict[str, Any]
    source: SourceLocation | None = None
    duration_ns: int = -1
    error: str | None = None
    # The live object the call was about (a model or mixin), resolved to a module path at
    # the end and then dropped: a weak reference, so recording never keeps a model alive.
    subject: weakref.ref | None = None


@dataclass
class Recorder:
    """Collects events; knows the filters. Plugins call :meth:`begin` / :meth:`end`."""

    categories: frozenset[str] = frozenset(DEFAULT_CATEGORIES)
    max_depth: int | None = None
    max_steps: int | None = None
    records: list[Record] = field(default_factory=list)
    thread: int = field(default_factory=threading.get_ident)
    # >0 while the recorder itself runs traced code (e.g. computing SAT defaults) or while a
    # generation step beyond max_steps runs: nothing is recorded then.
    suppress: int = 0
    _stack: list[Record | None] = field(default_factory=list)
    # For each stack slot, the id of the nearest recorded event at or below it (the parent
    # of anything opened above): O(1) per event instead of a scan down the stack.
    _parents: list[int | None] = field(default_factory=list)
    _t0: int = field(default_factory=time.perf_counter_ns)
    # The first model seen (a construction root or a runtime root) is the trace's primary
    # model: its module tree and hook table go into the trace. It is held strongly until the
    # trace is built, so a script that drops its model before the block ends still gets them.
    _primary: Any = None
    finalizers: list[Callable[[Recorder], None]] = field(default_factory=list)
    # Facts recorded while the code ran (a model adapter's, e.g. a token layout); the session's
    # own metadata is laid over them.
    meta: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""  # file:line of the ``with`` statement, for the nested-tracing error

    # -- state ------------------------------------------------------------------------
    def wants(self, category: str) -> bool:
        return category in self.categories

    def recording(self) -> bool:
        """True when a call happening now should be recorded (right thread, not suppressed)."""
        return self.suppress == 0 and threading.get_ident() == self.thread

    @contextlib.contextmanager
    def suppressed(self) -> Iterator[None]:
        self.suppress += 1
        try:
            yield
        finally:
            self.suppress -= 1

    def add_model(self, model: Any) -> None:
        if self._primary is None:
            self._primary = model

    # -- events -----------------------------------------------------------------------
    def begin(self, category: Category, name: str, data: dict[str, Any] | None = None,
              source: SourceLocation | None = None, subject: Any = None) -> tuple[int, Record | None]:
        """Open an event; returns (token, record or None when filtered out). Pass the token
        to :meth:`end`. Filtered frames still take a stack slot, so depth stays true."""
        token = len(self._stack)
        parent = self._parents[-1] if token else None
        if category not in self.categories or (self.max_depth is not None and token >= self.max_depth):
            self._stack.append(None)
            self._parents.append(parent)
            return token, None
        record = Record(id=len(self.records), parent=parent, category=category, name=name,
                        start_ns=time.perf_counter_ns() - self._t0, data=data if data is not None else {},
                        source=source, subject=None if subject is None else weakref.ref(subject))
        self.records.append(record)
        self._stack.append(record)
        self._parents.append(record.id)
        return token, record

    def end(self, token: int, error: str | None = None) -> None:
        """Close the event opened with ``token`` (and, defensively, anything left open above it)."""
        now = time.perf_counter_ns() - self._t0
        while len(self._stack) > token:
            record = self._stack.pop()
            self._parents.pop()
            if record is not None:
                record.duration_ns = now - record.start_ns
                if error is not None and record.error is None:
                    record.error = error if len(self._stack) == token else f"interrupted: {error}"

    def close_all(self, error: str | None) -> None:
        self.end(0, error or "not finished when recording stopped")

    # -- result -----------------------------------------------------------------------
    def primary_model(self) -> Any:
        return self._primary

    def build(self, exception: str | None = None, meta: dict[str, Any] | None = None) -> Trace:
        for finalize in self.finalizers:
            finalize(self)
        events = tuple(
            Event(id=r.id, parent=r.parent, category=r.category, name=r.name, start_ns=r.start_ns,
                  duration_ns=max(r.duration_ns, 0), data=r.data, source=r.source, error=r.error)
            for r in self.records)
        model = self.primary_model()
        modules: tuple[ModuleNode, ...] = ()
        hooks: dict[str, str] = {}
        full_meta = _library_meta()
        full_meta.update(categories=sorted(self.categories), max_depth=self.max_depth, max_steps=self.max_steps)
        if model is not None:
            modules = module_tree(model)
            hooks = dict(getattr(model, "hook_origins", {}) or {})
            full_meta["model_class"] = type(model).__name__
        full_meta.update(self.meta)
        full_meta.update(meta or {})
        self._primary = None
        return Trace(events=events, modules=modules, hooks=hooks, meta=full_meta, exception=exception)


def module_tree(model: Any) -> tuple[ModuleNode, ...]:
    """Every module of ``model`` with its own and total parameter counts (pre-order)."""
    named = list(model.named_modules(remove_duplicate=False))
    own: dict[str, int] = {}
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for path, module in named:
        # ``_parameters`` directly: named_parameters(recurse=False) is a generator stack per module.
        params = {k: p for k, p in module.__dict__.get("_parameters", {}).items() if p is not None}
        own[path] = sum(p.numel() for p in params.values())
        shapes[path] = {k: tuple(p.shape) for k, p in params.items()}
    totals = dict(own)
    # Children come after their parent in pre-order: add bottom-up.
    for path, _ in reversed(named):
        if path:
            parent = path.rpartition(".")[0]
            totals[parent] = totals.get(parent, 0) + totals[path]
    return tuple(ModuleNode(path=p, class_name=type(m).__name__, parameters=own[p], total=totals[p],
                            param_shapes=shapes[p]) for p, m in named)


def _library_meta() -> dict[str, Any]:
    from ._version import __version__

    meta: dict[str, Any] = {"tool": "cogvlm-tracer", "version": __version__,
                            "python": sys.version.split()[0]}
    torch = sys.modules.get("torch")
    if torch is not None:
        meta["torch"] = str(torch.__version__)
    sat = _sat_version()
    if sat is not None:
        meta["sat"] = sat
    from .chatter import active_log

    library_log = active_log()  # SAT's and DeepSpeed's log lines, kept here instead of printed
    if library_log is not None:
        meta["library_log"] = list(library_log)
    return meta


@functools.cache
def _sat_version() -> str | None:
    """The installed SwissArmyTransformer's version (reading package metadata takes ~1 ms)."""
    try:
        from importlib.metadata import version

        return version("SwissArmyTransformer")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return None
