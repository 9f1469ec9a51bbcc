"""Write an output file or folder completely or not at all.

A renderer that fails halfway (``dot`` missing, disk full, Ctrl-C) must not leave a
truncated ``report.html`` that looks like a result. We write to a temporary file in the
target's folder and ``os.replace`` it into place — atomic on POSIX and Windows.
A folder of outputs (a report, a trace) is written into a staging folder beside it and
swapped in at the end (:class:`StagedFolder`), so an interrupted run leaves the previous
result, or nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["StagedFolder", "check_writable_file", "check_writable_folder", "describe_os_error", "write_atomic"]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux's /proc): setting
    it to 0 for a moment would let another thread create a world-writable file meanwhile."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # elsewhere: the only portable way to read it
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path``; on any error the old file, if any, is kept."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


# ---------------------------------------------------------------------------------------------
# Output folders as transactions


def describe_os_error(path: str | Path | None, error: OSError) -> str:
    """``out/report: Read-only file system``: the path an OS call failed on and the reason, one line."""
    where = error.filename if error.filename is not None else path
    reason = error.strerror or str(error) or error.__class__.__name__
    return reason if where is None else f"{where}: {reason}"


def _parent_folder(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (where a new folder would be created)."""
    current = path.absolute().parent
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_writable_folder(path: str | Path, flag: str = "-o") -> Path:
    """Refuse, before any model work, an output folder that cannot be created or replaced.

    Permission bits say little to root (who ignores them) or on a read-only mount or an
    immutable (``chattr +i``) folder, so we create and remove a probe folder where the staging
    folder will go: the same operation the real write starts with.
    """
    from .errors import OutputError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{flag} {out}: exists and is not a folder (expected a folder to write into)")
    parent = _parent_folder(out) if not out.exists() else out.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {out}: {parent} is a file, not a folder (expected a path under a folder)")
    # An existing folder is swapped out as a whole: it must be changeable too (an immutable one
    # refuses new entries, as it refuses the rename).
    for folder in (parent, out) if out.is_dir() else (parent,):
        try:
            probe = tempfile.mkdtemp(prefix=f".{out.name or 'out'}.probe-", dir=folder)
            os.rmdir(probe)
        except OSError as e:
            raise OutputError(f"{flag} {out}: cannot write in {folder} ({e.strerror or e}); "
                              f"expected a writable folder") from e
    return out


def check_writable_file(path: str | Path, flag: str = "--output") -> Path:
    """Refuse, before any model work, an output file whose folder cannot take a new file."""
    from .errors import OutputError

    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{flag} {target}: is a folder, expected a file name")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise OutputError(f"{flag} {target}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{flag} {target}: cannot write in {folder} ({e.strerror or e}); "
                          f"expected a writable folder") from e
    return target


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).
    False where the call is not available (other systems, old kernels, some filesystems)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(result == 0)


class StagedFolder:
    """``with StagedFolder(out, owned) as stage:`` write everything into ``stage``; on a clean
    exit it becomes ``out`` in one step, on any exception (Ctrl-C, SIGTERM, disk full) it is
    removed and ``out`` is left as it was — never a folder describing two runs.

    ``out`` may hold things that are not ours (``out/`` of ``make report`` also holds
    ``out/bench-quick/``): entries whose names are not in ``owned`` and not written by this run
    are carried over into the new folder; entries named in ``owned`` but not written this time
    (a view an earlier run made) are dropped with the old result.
    """

    def __init__(self, out: str | Path, owned: set[str] | frozenset[str] = frozenset()) -> None:
        self.out = Path(out)
        self.owned = set(owned)
        self.stage: Path | None = None

    def __enter__(self) -> Path:
        self.out.absolute().parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=self.out.absolute().parent))
        try:
            os.chmod(self.stage, 0o777 & ~_umask())  # mkdtemp makes 0700
        except BaseException:  # Ctrl-C right here: __exit__ will not run
            shutil.rmtree(self.stage, ignore_errors=True)
            raise
        return self.stage

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        assert self.stage is not None
        stage, self.stage = self.stage, None
        if exc_type is not None:
            shutil.rmtree(stage, ignore_errors=True)
            return
        with _signals_held():  # a Ctrl-C mid-swap is handled after it, not halfway through
            self._swap_in(stage)

    def _swap_in(self, stage: Path) -> None:
        try:
            if not self.out.exists():
                os.rename(stage, self.out)
                return
            if not self.out.is_dir():
                raise NotADirectoryError(20, "exists and is not a folder", str(self.out))
            written = {p.name for p in stage.iterdir()}
            if _exchange(stage, self.out):
                old = stage  # after the exchange the staging path holds the previous result
            else:  # two renames: for an instant ``out`` is absent, never mixed
                old = self.out.absolute().parent / f".{self.out.name}.old-{os.getpid()}"
                os.rename(self.out, old)
                os.rename(stage, self.out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)  # not swapped in: the new result only
            raise
        # From here ``old`` holds the previous result and possibly the user's files: it is only
        # removed once they are all carried over (a failure leaves it, hidden, beside ``out``).
        for entry in list(old.iterdir()):
            if entry.name not in self.owned and entry.name not in written and not entry.name.startswith("."):
                os.rename(entry, self.out / entry.name)  # the user's own files stay
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the few renames of a swap (main thread, POSIX); their handlers
    run right after. Elsewhere a no-op."""
    import signal
    import threading

    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
