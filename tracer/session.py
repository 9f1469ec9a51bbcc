"""Recording sessions: ``with tracer.trace(out_dir) as t:`` — patches in, events out, everything undone.

A :class:`TraceHandle` opens one :class:`tracer.sink.Recorder`, installs the construction
patches and runtime hooks that write into it, and on exit removes them, builds the
:class:`tracer.schema.Trace` and writes the files.

Rules this module enforces:

* one recording at a time per process: a nested ``trace()`` — or a second thread entering
  one at the same moment — raises :class:`TracingError` naming where the active one started
  (patches are process-wide, so two recorders would record each other's calls, and undoing
  them out of order would leave patches behind for good);
* only the thread that opened the block is recorded; other threads run untouched;
* whatever happens inside the block — normal exit, an exception, ``KeyboardInterrupt`` —
  every patch and hook is removed before ``__exit__`` returns, the trace is built with the
  exception in it, the files are written, and the exception propagates as the same object.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from .errors import TracingError  # defined with the other errors so tracer.patching can raise it too
from .schema import CATEGORIES, DEFAULT_CATEGORIES, DEFAULT_MAX_STEPS, Trace
from .sink import Recorder

__all__ = ["TraceHandle", "TracingError", "active_recorder", "trace", "write_files"]

TRACE_FILE = "trace.json"
CHROME_FILE = "trace.chrome.json"

# The only module state: which recorder is active (the guard against nested recordings), and
# the lock that makes checking and claiming it one step for threads entering together.
_active: Recorder | None = None
_claim = threading.Lock()


def active_recorder() -> Recorder | None:
    return _active


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


class TraceHandle:
    """What ``with trace(...) as t`` gives: ``t.trace`` (after exit), ``t.paths`` written."""

    def __init__(self, out_dir: str | Path | None, categories: Iterable[str], max_depth: int | None,
                 max_steps: int | None, meta: dict[str, Any] | None, chrome: bool = False) -> None:
        cats = frozenset(categories)
        unknown = sorted(cats - set(CATEGORIES))
        if unknown:
            raise ValueError(f"categories {unknown}: expected a subset of {list(CATEGORIES)}")
        for name, value in (("max_depth", max_depth), ("max_steps", max_steps)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}={value!r}: expected a non-negative integer or None")
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.chrome = chrome
        self.meta = dict(meta or {})
        self.recorder = Recorder(categories=cats, max_depth=max_depth, max_steps=max_steps)
        self.trace: Trace | None = None
        self.paths: dict[str, Path] = {}
        self._uninstallers: list[Callable[[], None]] = []

    def __enter__(self) -> TraceHandle:
        global _active
        if self.trace is not None or self._uninstallers:
            raise TracingError("this tracer.trace() handle has already recorded; call tracer.trace() again")
        caller = sys._getframe(1)
        self.recorder.started_at = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        with _claim:  # check-then-set without a lock let two threads both install (and leak) patches
            if _active is not None:
                raise TracingError(f"tracing is already active (a tracer.trace() block opened at "
                                   f"{_active.started_at}); nested tracing is not supported: close the outer "
                                   "block first")
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
                    self.paths = write_files(self.trace, self.out_dir, chrome=self.chrome)
                except OSError as e:
                    if exc is None:
                        raise
                    exc.add_note(f"cogvlm-tracer: could not write the trace to {self.out_dir}: {e}")
        return False  # never swallow: the traced code's exception propagates unchanged


def write_files(trace_: Trace, out_dir: str | Path, *, staged: bool = True, chrome: bool = True) -> dict[str, Path]:
    """Write ``trace.json`` and (with ``chrome``) ``trace.chrome.json`` into ``out_dir`` (created if
    needed, or replaced as a whole: see :class:`tracer.files.StagedFolder`)."""
    import io

    from .export import write_chrome, write_json
    from .files import StagedFolder, write_atomic

    out = Path(out_dir)
    # Both files, or the previous pair, never one of each (Ctrl-C, disk full): staged, then swapped
    # in; ``staged=False`` when ``out_dir`` is itself a caller's staging folder (cogtrace report).
    with StagedFolder(out, owned={TRACE_FILE, CHROME_FILE}) if staged else contextlib.nullcontext(out) as stage:
        writers = ((TRACE_FILE, write_json), (CHROME_FILE, write_chrome)) if chrome else ((TRACE_FILE, write_json),)
        for name, writer in writers:
            text = io.StringIO()
            writer(trace_, text)
            write_atomic(stage / name, text.getvalue())
    paths = {"json": out / TRACE_FILE}
    if chrome:
        paths["chrome"] = out / CHROME_FILE
    return paths


def trace(out_dir: str | Path | None = None, *, categories: Iterable[str] = DEFAULT_CATEGORIES,
          max_depth: int | None = None, max_steps: int | None = DEFAULT_MAX_STEPS,
          meta: dict[str, Any] | None = None, chrome: bool = False) -> TraceHandle:
    """Record SAT construction calls and runtime shapes inside a ``with`` block.

    Example::

        import tracer
        with tracer.trace("out/") as t:              # writes out/trace.json on exit
            model = build_model("configs/tiny/cogvlm-grounding-generalist").model
            model(**inputs)
        print(len(t.trace.events))

    ``categories``: any of construction, module, hook, generation (the default: all four; fewer =
    cheaper) and training (SAT's training path, :mod:`tracer.training`; asked for explicitly);
    ``max_depth``: events nested deeper than this are not recorded;
    ``max_steps``: generation steps recorded in full per ``filling_sequence`` call after the
    context forward (step 0, always in full); later steps are recorded as step summaries (the
    step event alone: tokens fed, cache length, sampled token, time). ``None``: every step in
    full, at a cost that grows with the answer's length;
    ``chrome``: also write ``trace.chrome.json`` (Perfetto). Off by default: it repeats what
    ``trace.json`` holds and cost as much again to write; ``cogtrace render --format chrome``
    makes it from ``trace.json`` whenever it is wanted.
    """
    return TraceHandle(out_dir, categories, max_depth, max_steps, meta, chrome)
