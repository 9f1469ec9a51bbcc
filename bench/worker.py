"""Run one benchmark task in a fresh Python process and hand its result back as JSON.

The parent calls :func:`run_task` with a task reference (``"bench.cost:session"``) and JSON
keyword arguments; the child (``python -m bench.worker``) imports the function, calls it and
prints one line ``RESULT_MARK + json``. SAT and deepspeed print to stdout freely, so the
marker keeps the result apart from their chatter. The child adds its own peak resident set
size (``VmHWM`` from ``/proc/self/status``) to the result.

:func:`run_command` does the same for an external command (e.g. ``cogtrace build``) and
reads the peak RSS of exactly that child from ``os.wait4``'s resource usage.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RESULT_MARK", "CommandResult", "TaskResult", "peak_rss_mb", "run_command", "run_task"]

RESULT_MARK = "@@bench-result@@ "
REPO = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``; ``ru_maxrss`` if no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass
class TaskResult:
    """What a task returned (``value``), or why it failed (``error``, last traceback lines)."""

    task: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0  # wall time of the whole child process, imports included
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0  # user + system CPU time of the child process

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONWARNINGS"] = "ignore"  # peers warn a lot; the result line is all we read
    env.update(extra or {})
    return env


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_command(argv: Sequence[str], *, timeout: float = 600, env: Mapping[str, str] | None = None,
                cwd: Path = REPO) -> CommandResult:
    """Run ``argv``; wall time and the peak RSS of exactly this child.

    The child is reaped with ``os.wait4``, whose resource usage is the child's own
    (``RUSAGE_CHILDREN`` would be the maximum over every child this process ever had).
    Output goes to temporary files so that nothing but ``wait4`` reaps the child.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, text=True, env=_environment(env), cwd=cwd)
        killer = threading.Timer(timeout, proc.kill)  # a hung child is killed, not waited for
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timed_out = killer.finished.is_set()  # set only once the timer has fired
            killer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen the child is reaped
        out.seek(0)
        err.seek(0)
        stderr = err.read() + (f"\ntimed out after {timeout:.0f} s" if timed_out else "")
        return CommandResult(list(argv), proc.returncode, seconds, usage.ru_maxrss / 1024, out.read(), stderr,
                             usage.ru_utime + usage.ru_stime)


def run_task(task: str, kwargs: Mapping[str, Any] | None = None, *, timeout: float = 600,
             env: Mapping[str, str] | None = None) -> TaskResult:
    """Run ``module:function(**kwargs)`` in a fresh interpreter; never raises for task errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(kwargs or {}), f)
        args_file = f.name
    try:
        result = run_command([sys.executable, "-m", "bench.worker", task, args_file], timeout=timeout, env=env)
    finally:
        os.unlink(args_file)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            payload = json.loads(line[len(RESULT_MARK):])
            return TaskResult(task, payload.get("value"), payload.get("error"), result.seconds,
                              max(result.peak_rss_mb, float(payload.get("peak_rss_mb", 0.0))), result.cpu_seconds)
    reason = _tail(result.stderr) or f"exit code {result.returncode}, no result line"
    return TaskResult(task, error=reason, seconds=result.seconds, peak_rss_mb=result.peak_rss_mb,
                      cpu_seconds=result.cpu_seconds)


def _describe(error: BaseException) -> str:
    """'Type: message', plus the innermost cause when the error wraps another (torchinfo and
    torchview re-raise a RuntimeError 'see above' from the real failure)."""
    text = f"{type(error).__name__}: {error}".strip()
    root, seen = error, {id(error)}
    while (inner := root.__cause__ or root.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        root = inner
    if root is not error:
        text += f" [caused by {type(root).__name__}: {str(root).strip().splitlines()[0] if str(root).strip() else ''}]"
    return text[:2000]


def _child(task: str, args_file: str) -> int:
    module_name, _, func_name = task.partition(":")
    kwargs = json.loads(Path(args_file).read_text())
    payload: dict[str, Any]
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        payload = {"value": func(**kwargs)}
    except BaseException as e:  # report anything, including SystemExit from a peer
        payload = {"error": _describe(e), "traceback": traceback.format_exc(limit=-6)}
    payload["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.flush()
    print(RESULT_MARK + json.dumps(payload, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
