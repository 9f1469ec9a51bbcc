"""Library chatter: SAT's and DeepSpeed's log lines, kept out of the terminal and in the trace.

SAT logs through the ``sat`` logger and DeepSpeed through ``DeepSpeed``, each with its own
stream handler (DeepSpeed's on stdout, mixed into our answers); a command printed 13 such
lines. :class:`LibraryLog` puts a *logger-level* filter on both: a logger's filters run before
any of its handlers, including handlers the library adds later (SAT adds its own when it is
first imported, which happens inside the block). The filter keeps each line and, unless
``verbose``, stops it there. Leaving the block removes the filters: nothing stays patched.
"""

from __future__ import annotations

import logging
from types import TracebackType

__all__ = ["LIBRARY_LOGGERS", "VERBOSE_VAR", "LibraryLog", "active_log", "verbose"]

LIBRARY_LOGGERS = ("sat", "DeepSpeed")
# Set for the ranks a command starts (tracer.parallel.launch), so ``cogtrace --verbose``
# reaches the processes torchrun runs.
VERBOSE_VAR = "COGTRACE_VERBOSE"

_active: LibraryLog | None = None


def verbose() -> bool:
    """Whether the open :class:`LibraryLog` lets the lines through (``--verbose``)."""
    return _active is not None and _active.verbose


def active_log() -> list[str] | None:
    """The lines captured so far by the open :class:`LibraryLog` (a live list), or None."""
    return None if _active is None else _active.lines


class _Keep(logging.Filter):
    def __init__(self, owner: LibraryLog) -> None:
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        self.owner.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")
        return self.owner.verbose


class LibraryLog:
    """``with LibraryLog(verbose=False) as lines:`` — SAT/DeepSpeed log lines go to ``lines``."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.lines: list[str] = []
        self._filter = _Keep(self)
        self._previous: LibraryLog | None = None

    def __enter__(self) -> list[str]:
        global _active
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        self._previous, _active = _active, self
        return self.lines

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _active
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        _active = self._previous
