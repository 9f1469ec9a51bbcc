"""``cogtrace doctor`` names each problem with its fix and fails when something needed is missing.

The lookups (``find_spec``, ``which``, ``dist_version``, ``dist_file``, ``top_level_owners``)
are module attributes of :mod:`tracer.commands.doctor`, replaced here to simulate broken
machines. ``--no-import`` keeps SAT's slow import out of every test but one.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

import pytest

from tracer import cli
from tracer.commands import doctor


def _run(capsys: pytest.CaptureFixture[str], *, no_import: bool = True) -> tuple[int, str]:
    code = doctor.run(argparse.Namespace(no_import=no_import))
    return code, capsys.readouterr().out


def _by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_doctor_is_a_cogtrace_command() -> None:
    assert cli.COMMANDS["doctor"][0] == "doctor"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed here")
def test_this_machine_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, no_import=False)
    assert code == 0, out
    for name in ("Python", "torch", "SAT (SwissArmyTransformer)", "import name `sat`", "triton", "wandb",
                 "requests", "deepspeed", "Graphviz dot", "CUDA", "import sat.model"):
        assert f"OK    {name}" in out, out


def test_missing_module_fails_with_its_fix(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = doctor.find_spec
    monkeypatch.setattr(doctor, "find_spec", lambda name: None if name == "triton" else real(name))
    check = _by_name(doctor.run_checks(import_sat=False))["triton"]
    assert check.status == "FAIL" and "Triton kernel" in check.detail
    assert check.fix == ".venv/bin/pip install triton"
    code, out = _run(capsys)
    assert code == 1
    assert "FAIL  triton" in out and "fix: .venv/bin/pip install triton" in out
    assert "1 problem(s) must be fixed: triton" in out


def test_missing_torch_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor.find_spec
    monkeypatch.setattr(doctor, "find_spec", lambda name: None if name == "torch" else real(name))
    checks = _by_name(doctor.run_checks(import_sat=False))
    assert checks["torch"].status == "FAIL" and "torch==2.13.0" in checks["torch"].fix
    assert checks["CUDA"].status == "WARN"  # unknown, but not a second failure


def test_missing_dot_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = doctor.which
    monkeypatch.setattr(doctor, "which", lambda name: None if name == "dot" else real(name))
    check = _by_name(doctor.run_checks(import_sat=False))["Graphviz dot"]
    assert check.status == "FAIL" and "apt-get install graphviz" in check.fix
    code, out = _run(capsys)
    assert code == 1 and "FAIL  Graphviz dot" in out


def test_missing_chromium_only_warns(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = doctor.which
    monkeypatch.setattr(doctor, "which", lambda name: None if name in doctor.CHROMIUM_NAMES else real(name))
    check = _by_name(doctor.run_checks(import_sat=False))["Chromium"]
    assert check.status == "WARN" and not check.required
    if shutil.which("dot") is not None:
        code, out = _run(capsys)
        assert code == 0 and "WARN  Chromium" in out and "warning(s)" in out


def test_sat_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(dist: str) -> str:
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(doctor, "dist_version", missing)
    check = doctor.check_sat_distribution()
    assert check.status == "FAIL" and "SwissArmyTransformer==0.4.12" in check.fix and "triton" in check.fix


def test_other_sat_version_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "dist_version", lambda dist: "0.4.11")
    check = doctor.check_sat_distribution()
    assert check.status == "WARN" and "0.4.11" in check.detail and not check.required


def _spec(origin: Path) -> Any:
    return importlib.machinery.ModuleSpec("sat", None, origin=str(origin))


def test_sat_shadowed_by_another_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The well-known clash: another distribution installs a top-level ``sat`` over SAT's."""
    other = tmp_path / "site-packages" / "sat" / "__init__.py"
    ours = tmp_path / "elsewhere" / "sat" / "__init__.py"
    real = doctor.find_spec
    monkeypatch.setattr(doctor, "find_spec", lambda name: _spec(other) if name == "sat" else real(name))
    monkeypatch.setattr(doctor, "dist_file", lambda dist, rel: ours)
    monkeypatch.setattr(doctor, "top_level_owners", lambda module: ["SwissArmyTransformer", "sat"])
    check = doctor.check_sat_import_name()
    assert check.status == "FAIL"
    assert str(other) in check.detail and "shadowed by sat" in check.detail
    assert "pip uninstall sat" in check.fix and "--force-reinstall SwissArmyTransformer==0.4.12" in check.fix


def test_sat_name_taken_and_swissarmytransformer_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def absent(dist: str, rel: str) -> Path:
        raise importlib.metadata.PackageNotFoundError(dist)

    real = doctor.find_spec
    monkeypatch.setattr(doctor, "find_spec", lambda name: _spec(tmp_path / "sat.py") if name == "sat" else real(name))
    monkeypatch.setattr(doctor, "dist_file", absent)
    monkeypatch.setattr(doctor, "top_level_owners", lambda module: ["sat"])
    check = doctor.check_sat_import_name()
    assert check.status == "FAIL" and "from sat" in check.detail and "SwissArmyTransformer is not installed" in check.detail


def test_two_owners_of_sat_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor.top_level_owners
    monkeypatch.setattr(doctor, "top_level_owners", lambda module: [*real(module), "sat-solver"])
    check = doctor.check_sat_import_name()
    assert check.status == "WARN" and "sat-solver" in check.detail


def test_no_module_named_sat(monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor.find_spec
    monkeypatch.setattr(doctor, "find_spec", lambda name: None if name == "sat" else real(name))
    check = doctor.check_sat_import_name()
    assert check.status == "FAIL" and "--force-reinstall" in check.fix


def test_sat_import_failure_names_the_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'wandb'", name="wandb")

    monkeypatch.setattr(doctor, "import_module", broken)
    check = doctor.check_sat_imports()
    assert check.status == "FAIL" and check.fix == ".venv/bin/pip install wandb"


def test_old_python_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.sys, "version_info", (3, 9, 18, "final", 0))
    check = doctor.check_python()
    assert check.status == "FAIL" and ">= 3.10" in check.detail
