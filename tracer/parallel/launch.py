"""Spawn a model-parallel job through ``torch.distributed.run`` (torchrun) and report it in one line.

``cogtrace chat|report ... --nproc N`` call :func:`launch`, which runs::

    python -m torch.distributed.run --nproc_per_node N --master_addr 127.0.0.1 --master_port P \\
        --max_restarts 0 -m tracer.parallel.worker JOB ...

with ``OMP_NUM_THREADS=1`` per rank (N ranks on a 2-core laptop would otherwise each start a
thread per core and fight for them). What can go wrong, and what the user sees (one line,
non-zero exit, nothing hangs):

* the port is taken — checked before spawning (torchrun would wait for its rendezvous);
* a rank fails (a :class:`UserError` inside, a crash, ``--fail-rank``) — torchrun stops the
  other ranks (SIGTERM) and exits; we name the rank and its exit code, or repeat the rank's
  own one-line error;
* the job outlives ``timeout`` — the whole process group (torchrun and every rank) is killed.

The ranks' stderr (SAT's log lines, tracebacks) goes to ``<log>``; stdout (rank 0's answers)
passes through.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..chatter import VERBOSE_VAR, verbose
from .checks import ParallelError

__all__ = ["DEFAULT_TIMEOUT", "LaunchError", "check_port", "free_port", "launch"]

DEFAULT_TIMEOUT = 600.0  # seconds; a tiny chat at mp=4 on 2 cores takes well under a minute
DEBUG_TIMEOUT = 24 * 3600.0  # a person stepping through the ranks is not a hang
DEBUG_PORT_VAR = "COGTRACE_DEBUG_PORT"  # read by tracer.parallel.worker
KILL_GRACE = 5.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class LaunchError(ParallelError):
    """A model-parallel job that could not start or did not finish."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port(port: int) -> None:
    """Refuse a master port that another process is listening on."""
    if not 0 < port < 65536:
        raise LaunchError(f"--master-port {port}: expected a TCP port between 1 and 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise LaunchError(f"--master-port {port}: already in use ({e.strerror}); expected a free port for "
                              f"torch.distributed's rendezvous (leave it out to pick one)") from e


def _env(threads: int, debug_port: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if debug_port is not None:
        env[DEBUG_PORT_VAR] = str(debug_port)
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    if verbose():
        env[VERBOSE_VAR] = "1"
    # The ranks import this very copy of the package, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _failure_line(log: str, code: int) -> str:
    """The one line to show for a failed job: a rank's own error, else torchrun's root cause."""
    own = [line.split("cogtrace: error: ", 1)[1] for line in log.splitlines() if "cogtrace: error: " in line]
    if own:
        return own[0]
    # torchrun's summary lists the first failure under "Root Cause"; the ranks it stopped come before.
    cause = log[log.rfind("Root Cause"):] if "Root Cause" in log else log
    rank = re.search(r"rank\s*:\s*(\d+)\s*\(local_rank", cause)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    error = re.findall(r"^(\w+(?:Error|Exception)): (.+)$", log, flags=re.MULTILINE)
    what = f"rank {rank.group(1)} failed" if rank else "a rank failed"
    if exit_code:
        what += f" with exit code {exit_code.group(1)}"
    if error:
        what += f" ({error[0][0]}: {error[0][1][:200]})"
    return f"{what}; torchrun stopped the other ranks (exit status {code})"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def launch(job: Sequence[str], nproc: int, *, master_port: int | None = None, timeout: float = DEFAULT_TIMEOUT,
           threads: int = 1, log: str | Path | None = None, debug_port: int | None = None) -> int:
    """Run ``tracer.parallel.worker`` with ``job`` on ``nproc`` ranks; 0 on success, else raise
    :class:`LaunchError` with one line (the ranks are gone by then)."""
    if nproc < 1:
        raise LaunchError(f"--nproc {nproc}: expected a positive number of ranks")
    if master_port is None:
        master_port = free_port()
    else:
        check_port(master_port)
    if debug_port is not None:
        for rank in range(nproc):
            check_port(debug_port + rank)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(master_port), "--max_restarts", "0",
           "--monitor_interval", "0.5", "-m", "tracer.parallel.worker", *job]
    log_path = Path(log) if log is not None else Path(tempfile.mkstemp(prefix="cogtrace-torchrun-", suffix=".log")[1])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w+b") as err:
        # Own session: on timeout or Ctrl-C we kill torchrun and every rank, nothing orphaned.
        proc = subprocess.Popen(cmd, env=_env(threads, debug_port), stderr=err, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise LaunchError(f"model-parallel job on {nproc} ranks did not finish within {timeout:g} s; all ranks "
                              f"were stopped (log: {log_path})") from None
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            # torchrun stops its workers before it exits; anything left in the group is killed.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if code != 0:
        raise LaunchError(_failure_line(text, code) + f" (log: {log_path})")
    if log is None:
        with contextlib.suppress(OSError):
            log_path.unlink()
    return 0
