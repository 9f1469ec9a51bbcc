"""``cogtrace doctor``: is this machine ready? Each check prints OK, WARN or FAIL and the fix.

The failures people actually hit with CogVLM's SAT code path, in the order they hit them:

* SwissArmyTransformer is installed as the *distribution* ``SwissArmyTransformer`` but
  imported as ``sat`` — and PyPI has other packages whose top-level module is also ``sat``.
  Whichever was installed last wins, and ``import sat`` then fails in odd ways. We compare
  the file ``import sat`` would load with the one SwissArmyTransformer installed.
* SAT 0.4.12 imports ``triton``, ``wandb`` and ``requests`` at import time without declaring
  them, so ``pip install SwissArmyTransformer`` alone gives a package that cannot be imported.
* Diagrams need Graphviz's ``dot``, a system package, not a pip one.
* A CUDA build of torch is gigabytes; this toolkit needs only the CPU wheel.

Lookups go through the module-level names ``find_spec``, ``which``, ``dist_version``,
``dist_file`` and ``import_module`` so that tests can replace them; nothing here is cached.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

__all__ = ["Check", "add_arguments", "format_check", "run", "run_checks"]

EXPECTED_SAT = "0.4.12"
SAT_DIST = "SwissArmyTransformer"
MIN_PYTHON = (3, 10)
TORCH_PIN = "torch==2.13.0"
# Modules SAT imports at import time although its metadata does not declare them.
UNDECLARED = {
    "triton": "SAT's rotary embedding (FastRotaryEmbedding) is a Triton kernel",
    "wandb": "sat.training imports it for logging",
    "requests": "sat.resources imports it to download checkpoints",
}
# Declared by SAT, listed because a broken install most often lacks it.
DEEPSPEED_WHY = "sat.training imports it (SAT declares it, but its wheel build often fails)"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

Status = Literal["OK", "WARN", "FAIL"]

# -- lookups (replaced in tests) -------------------------------------------------------------
find_spec: Callable[[str], Any] = importlib.util.find_spec
which: Callable[[str], str | None] = shutil.which
dist_version: Callable[[str], str] = importlib.metadata.version
import_module: Callable[[str], ModuleType] = importlib.import_module


def dist_file(dist: str, relative: str) -> Path:
    """Where distribution ``dist`` installed ``relative`` (e.g. ``sat/__init__.py``)."""
    return Path(str(importlib.metadata.distribution(dist).locate_file(relative)))


def top_level_owners(module: str) -> list[str]:
    """Every installed distribution that ships the top-level module ``module``."""
    return sorted(set(importlib.metadata.packages_distributions().get(module, [])))


@dataclass(frozen=True)
class Check:
    """One line of the report. ``fix`` says what to run; empty when there is nothing to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = True  # a FAIL of an optional check is shown as WARN


# ---------------------------------------------------------------------------------------------
# The checks


def check_python() -> Check:
    version = ".".join(str(v) for v in sys.version_info[:3])
    if sys.version_info[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return Check("Python", "FAIL", f"{version} at {sys.executable}; need >= {need}",
                     f"install Python {need}+ and recreate the venv: make clean setup PY=python3.11")
    return Check("Python", "OK", f"{version} at {sys.executable}")


def check_torch() -> Check:
    if find_spec("torch") is None:
        return Check("torch", "FAIL", "not installed", f".venv/bin/pip install {TORCH_PIN}  (the CPU wheel)")
    torch = import_module("torch")
    cuda = getattr(torch.version, "cuda", None)
    build = f"CUDA {cuda} build" if cuda else "CPU build"
    detail = f"{torch.__version__} ({build})"
    if cuda and not torch.cuda.is_available():
        return Check("torch", "WARN", detail + ", but no GPU is usable",
                     f"the CPU wheel is enough here and far smaller: .venv/bin/pip install {TORCH_PIN}", required=False)
    return Check("torch", "OK", detail)


def check_cuda() -> Check:
    """Never required: tiny configs run on CPU, full size on meta."""
    if find_spec("torch") is None:
        return Check("CUDA", "WARN", "unknown (torch is missing)", required=False)
    torch = import_module("torch")
    if torch.cuda.is_available():
        return Check("CUDA", "OK", f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
    return Check("CUDA", "OK", "no GPU: tiny models run on the CPU, full size on the meta device (nothing to do)")


def check_sat_distribution() -> Check:
    try:
        version = dist_version(SAT_DIST)
    except importlib.metadata.PackageNotFoundError:
        return Check(f"SAT ({SAT_DIST})", "FAIL", "distribution not installed",
                     f".venv/bin/pip install {SAT_DIST}=={EXPECTED_SAT} triton wandb requests")
    if version != EXPECTED_SAT:
        return Check(f"SAT ({SAT_DIST})", "WARN", f"{version}; this toolkit is tested with {EXPECTED_SAT} "
                     f"(line numbers in docs/breakpoints.md may differ)",
                     f".venv/bin/pip install {SAT_DIST}=={EXPECTED_SAT}", required=False)
    return Check(f"SAT ({SAT_DIST})", "OK", version)


def check_sat_import_name() -> Check:
    """``import sat`` must load SwissArmyTransformer's files, not another package named ``sat``."""
    name = "import name `sat`"
    spec = find_spec("sat")
    if spec is None or not spec.origin:
        return Check(name, "FAIL", "no module named `sat` (SwissArmyTransformer installs it)",
                     f".venv/bin/pip install --force-reinstall {SAT_DIST}=={EXPECTED_SAT}")
    loaded = Path(spec.origin).resolve()
    owners = top_level_owners("sat")
    others = [o for o in owners if o.lower() != SAT_DIST.lower()]
    try:
        expected = dist_file(SAT_DIST, "sat/__init__.py").resolve()
    except importlib.metadata.PackageNotFoundError:
        who = ", ".join(others) or "an unknown package"
        return Check(name, "FAIL", f"`import sat` loads {loaded}, from {who}, and {SAT_DIST} is not installed",
                     f".venv/bin/pip uninstall {' '.join(others) or 'sat'} && "
                     f".venv/bin/pip install {SAT_DIST}=={EXPECTED_SAT}")
    if loaded != expected:
        who = ", ".join(others) or "another package or a local folder named sat"
        return Check(name, "FAIL", f"`import sat` loads {loaded}, not {SAT_DIST}'s {expected}: shadowed by {who}",
                     f"remove the other one (.venv/bin/pip uninstall {' '.join(others) or '<it>'}, or rename the "
                     f"local sat/ folder), then .venv/bin/pip install --force-reinstall {SAT_DIST}=={EXPECTED_SAT}")
    if others:
        return Check(name, "WARN", f"loads {SAT_DIST}'s files, but {', '.join(others)} also installs a top-level "
                     f"`sat`; reinstalling either would overwrite the other",
                     f".venv/bin/pip uninstall {' '.join(others)}", required=False)
    return Check(name, "OK", f"{loaded}")


def check_module(module: str, why: str, *, pip_name: str | None = None, required: bool = True) -> Check:
    if find_spec(module) is None:
        return Check(module, "FAIL", f"missing; {why}", f".venv/bin/pip install {pip_name or module}",
                     required=required)
    try:
        version = dist_version(pip_name or module)
    except importlib.metadata.PackageNotFoundError:
        version = "installed"
    return Check(module, "OK", version)


def check_sat_imports() -> Check:
    """The real test: importing SAT's model code (3-10 s; pulls deepspeed and transformers)."""
    try:
        import_module("sat.model.official.llama_model")
    except ModuleNotFoundError as e:
        return Check("import sat.model", "FAIL", f"ModuleNotFoundError: {e}",
                     f".venv/bin/pip install {e.name or '<the missing module>'}")
    except Exception as e:  # SAT or one of its imports breaking in any other way
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return Check("import sat.model", "FAIL", f"{type(e).__name__}: {first}",
                     f".venv/bin/pip install --force-reinstall {SAT_DIST}=={EXPECTED_SAT}")
    return Check("import sat.model", "OK", "SAT's LLaMA and EVA2-CLIP models import")


def check_dot() -> Check:
    path = which("dot")
    if path is None:
        return Check("Graphviz dot", "FAIL", "not on PATH; needed for the SVG/PNG diagrams (cogtrace render, docs)",
                     "sudo apt-get install graphviz   (macOS: brew install graphviz; or: bash scripts/ensure_graphviz.sh)")
    try:
        done = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
        version = (done.stderr or done.stdout).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return Check("Graphviz dot", "FAIL", f"{path} does not run", "reinstall: sudo apt-get install --reinstall graphviz")
    return Check("Graphviz dot", "OK", f"{version} ({path})")


def check_chromium() -> Check:
    for name in CHROMIUM_NAMES:
        path = which(name)
        if path:
            return Check("Chromium", "OK", f"{path} (headless screenshots of the HTML report)", required=False)
    return Check("Chromium", "WARN", "not found; optional, only for screenshots of the HTML report",
                 "sudo apt-get install chromium", required=False)


def run_checks(*, import_sat: bool = True) -> list[Check]:
    """All checks, in the order a set-up would fix them."""
    checks = [check_python(), check_torch(), check_cuda(), check_sat_distribution(), check_sat_import_name()]
    checks += [check_module(module, why) for module, why in UNDECLARED.items()]
    checks.append(check_module("deepspeed", DEEPSPEED_WHY))
    for module, pip_name in (("rich", None), ("graphviz", None), ("PIL", "pillow"), ("sentencepiece", None)):
        checks.append(check_module(module, "declared dependency of cogvlm-tracer", pip_name=pip_name))
    # Importing SAT only makes sense once its pieces are there; otherwise it repeats a failure.
    if import_sat and all(c.status != "FAIL" for c in checks):
        checks.append(check_sat_imports())
    checks += [check_dot(), check_chromium()]
    return checks


# ---------------------------------------------------------------------------------------------
# The command


def format_check(check: Check) -> str:
    status = check.status if check.required or check.status == "OK" else "WARN"
    line = f"  {status:<5} {check.name:<26} {check.detail}"
    if check.fix and status != "OK":
        line += f"\n        fix: {check.fix}"
    return line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-import", action="store_true",
                        help="skip actually importing SAT's model code (saves 3-10 s)")


def failures(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.status == "FAIL" and c.required]


def run(args: argparse.Namespace) -> int:
    print("cogtrace doctor: checking this machine for cogvlm-tracer", flush=True)
    checks = run_checks(import_sat=not args.no_import)
    for check in checks:
        print(format_check(check))
    failed = failures(checks)
    warned = [c for c in checks if c.status != "OK" and c not in failed]
    if failed:
        print(f"\n{len(failed)} problem(s) must be fixed: {', '.join(c.name for c in failed)}")
        return 1
    print(f"\nAll required checks passed{f' ({len(warned)} warning(s))' if warned else ''}.")
    return 0
