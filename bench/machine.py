"""The machine and software a benchmark ran on, for the header of ``docs/benchmarks.md``."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["PACKAGES", "MachineInfo", "load_average", "machine_info"]

# Distribution names whose versions the report lists (ours, the stack, the peers, the tools).
PACKAGES = ("cogvlm-tracer", "torch", "SwissArmyTransformer", "torchinfo", "torchview", "torchlens",
            "viztracer", "pyinstrument", "matplotlib")


@dataclass(frozen=True)
class MachineInfo:
    date_utc: str
    cpu_model: str
    cores: int
    ram_gib: float
    os: str
    python: str
    versions: dict[str, str]
    commit: str
    load_at_start: tuple[float, float, float]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit(repo: Path) -> str:
    """The checked-out commit (read only), with '+changes' when the work tree differs."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages: how busy the shared machine was."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3  # type: ignore[return-value]


def machine_info(repo: Path) -> MachineInfo:
    return MachineInfo(
        date_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 0,
        ram_gib=_ram_gib(),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        versions={name: _version(name) for name in PACKAGES},
        commit=_commit(repo),
        load_at_start=load_average(),
    )
