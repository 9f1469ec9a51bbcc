"""Recording: ``with tracer.trace(out_dir) as t:`` — patches in, events out, everything undone.

The :class:`Recorder` is the event sink shared by the construction patches
(:mod:`tracer.construction`) and the runtime hooks (:mod:`tracer.runtime`). Events are
kept as small mutable records while the code runs (one list append per call) and frozen
into :class:`tracer.trace.Event` objects once, when the block exits.

Rules this module enforces:

* one recording at a time per process: a nested ``trace()`` raises :class:`TracingError`
  naming where the active one started (patches are process-wide, so two recorders would
  record each other's calls);
* only the thread that opened the block is recorded; other threads run untouched;
* whatever happens inside the block — normal exit, an exception, ``KeyboardInterrupt`` —
  every patch and hook is removed before ``__exit__`` returns, the trace is built with the
  exception in it, the files are written, and the exception propagates as the same object.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from .trace import CATEGORIES, DEFAULT_CATEGORIES, Category, Event, ModuleNode, SourceLocation, Trace

__all__ = ["Recorder", "TraceHandle", "TracingError", "active_recorder", "trace"]

TRACE_FILE = "trace.json"
CHROME_FILE = "trace.chrome.json"

# The only module state: which recorder is active (the guard against nested recordings).
_active: Recorder | None = None


class TracingError(RuntimeError):
    """Tracing cannot start or was used wrongly (e.g. a nested ``trace()`` block)."""


def active_recorder() -> Recorder | None:
    return _active


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

    categories: frozenset[str] = frozenset(CATEGORIES)
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
    from . import __version__

    meta: dict[str, Any] = {"tool": "cogvlm-tracer", "version": __version__,
                            "python": sys.version.split()[0]}
    torch = sys.modules.get("torch")
    if torch is not None:
        meta["torch"] = str(torch.__version__)
    sat = _sat_version()
    if sat is not None:
        meta["sat"] = sat
    return meta


@functools.cache
def _sat_version() -> str | None:
    """The installed SwissArmyTransformer's version (reading package metadata takes ~1 ms)."""
    try:
        from importlib.metadata import version

        return version("SwissArmyTransformer")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return None


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


class TraceHandle:
    """What ``with trace(...) as t`` gives: ``t.trace`` (after exit), ``t.paths`` written."""

    def __init__(self, out_dir: str | Path | None, categories: Iterable[str], max_depth: int | None,
                 max_steps: int | None, meta: dict[str, Any] | None) -> None:
        cats = frozenset(categories)
        unknown = sorted(cats - set(CATEGORIES))
        if unknown:
            raise ValueError(f"categories {unknown}: expected a subset of {list(CATEGORIES)}")
        for name, value in (("max_depth", max_depth), ("max_steps", max_steps)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}={value!r}: expected a non-negative integer or None")
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.meta = dict(meta or {})
        self.recorder = Recorder(categories=cats, max_depth=max_depth, max_steps=max_steps)
        self.trace: Trace | None = None
        self.paths: dict[str, Path] = {}
        self._uninstallers: list[Callable[[], None]] = []

    def __enter__(self) -> TraceHandle:
        global _active
        if _active is not None:
            raise TracingError(f"tracing is already active (a tracer.trace() block opened at {_active.started_at}); "
                               "nested tracing is not supported: close the outer block first")
        if self.trace is not None or self._uninstallers:
            raise TracingError("this tracer.trace() handle has already recorded; call tracer.trace() again")
        caller = sys._getframe(1)
        self.recorder.started_at = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        _active = self.recorder
        try:
            rec = self.recorder
            if rec.wants("construction"):
                from .construction import install as install_construction

                self._uninstallers.append(install_construction(rec))
            if rec.categories & {"module", "hook", "generation"}:
                from .runtime import install as install_runtime

                self._uninstallers.append(install_runtime(rec))
            if rec.wants("training"):
                from .training import install as install_training

                self._uninstallers.append(install_training(rec))
        except BaseException:
            self._uninstall()
            raise
        return self

    def _uninstall(self) -> None:
        global _active
        try:
            while self._uninstallers:
                self._uninstallers.pop()()
        finally:
            _active = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        try:
            self._uninstall()
        finally:
            # sys.exit(0) ends a script normally: not an exception worth reporting.
            clean_exit = isinstance(exc, SystemExit) and exc.code in (0, None)
            text = None if exc is None or clean_exit else _exception_text(exc)
            self.recorder.close_all(None if text is None or exc is None else f"{type(exc).__name__}: {exc}")
            self.trace = self.recorder.build(exception=text, meta=self.meta)
            if self.out_dir is not None:
                try:
                    self.paths = write_files(self.trace, self.out_dir)
                except OSError as e:
                    if exc is None:
                        raise
                    exc.add_note(f"cogvlm-tracer: could not write the trace to {self.out_dir}: {e}")
        return False  # never swallow: the traced code's exception propagates unchanged


def write_files(trace_: Trace, out_dir: str | Path) -> dict[str, Path]:
    """Write ``trace.json`` and ``trace.chrome.json`` into ``out_dir`` (created if needed)."""
    import io

    from .export import write_chrome, write_json
    from .files import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / TRACE_FILE, "chrome": out / CHROME_FILE}
    for key, writer in (("json", write_json), ("chrome", write_chrome)):
        text = io.StringIO()
        writer(trace_, text)
        write_atomic(paths[key], text.getvalue())  # complete or not at all (Ctrl-C, disk full)
    return paths


def trace(out_dir: str | Path | None = None, *, categories: Iterable[str] = DEFAULT_CATEGORIES,
          max_depth: int | None = None, max_steps: int | None = None,
          meta: dict[str, Any] | None = None) -> TraceHandle:
    """Record SAT construction calls and runtime shapes inside a ``with`` block.

    Example::

        import tracer
        with tracer.trace("out/") as t:              # writes out/trace.json, out/trace.chrome.json
            model = build_model("configs/tiny/cogvlm-grounding-generalist").model
            model(**inputs)
        print(len(t.trace.events))

    ``categories``: any of construction, module, hook, generation (the default: all four; fewer =
    cheaper) and training (SAT's training path, :mod:`tracer.training`; asked for explicitly);
    ``max_depth``: events nested deeper than this are not recorded;
    ``max_steps``: generation steps recorded per ``filling_sequence`` call (the context
    forward is step 0 and always recorded when generation is traced).
    """
    return TraceHandle(out_dir, categories, max_depth, max_steps, meta)
