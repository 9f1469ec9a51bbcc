"""launch.json entries tested like a debugger: each program starts under debugpy, a Debug Adapter
Protocol client sets the breakpoint docs/breakpoints.md documents inside SAT, and it is hit.

Covers the configurations batch 2 added (fine-tuning, CogAgent); the model-parallel attach
entries need two torchrun ranks and are checked by tests/test_vscode.py's structure test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.dap import Session
from test_vscode import REPO, VSCODE, load_jsonc

sys.path.insert(0, str(REPO / "scripts"))
import gen_breakpoints  # noqa: E402 - the script that writes docs/breakpoints.md

pytestmark = pytest.mark.skipif(importlib.util.find_spec("debugpy") is None, reason="debugpy is not installed")


def _config(prefix: str) -> dict[str, Any]:
    launch = load_jsonc(VSCODE / "launch.json")
    [config] = [c for c in launch["configurations"] if c["name"].startswith(prefix)]
    return dict(config)


def _documented(ref: str) -> tuple[str, int]:
    """Where docs/breakpoints.md says to stop in ``ref`` (module:qualname), as file and line."""
    for _, _, targets in gen_breakpoints.SECTIONS:
        for target in targets:
            if target.ref == ref:
                where = gen_breakpoints.locate(target)
                page = (REPO / "docs" / "breakpoints.md").read_text(encoding="utf-8")
                assert f"line {where.stop_line}:" in page, "docs/breakpoints.md is stale: run make docs"
                return str(where.file), where.stop_line
    raise LookupError(ref)


def _hit(config: dict[str, Any], ref: str, substitutions: dict[str, str]) -> None:
    path, line = _documented(ref)
    session = Session(config, REPO, {"${input:lang}": "en", **substitutions})
    try:
        stopped_path, stopped_line = session.stop_at(path, line)
    finally:
        session.close()
    assert (Path(stopped_path).resolve(), stopped_line) == (Path(path).resolve(), line)


def test_walkthrough_08_stops_in_lora_reinit() -> None:
    _hit(_config("Walkthrough 08"), "sat.model.finetune.lora2:LoraMixin.reinit", {})


def test_walkthrough_10_stops_in_sat_cross_attention() -> None:
    _hit(_config("Walkthrough 10"), "sat.transformer_defaults:cross_attention_forward_default", {})


def test_finetune_configuration_stops_in_training_main(tmp_path: Path) -> None:
    from tracer.finetune.data import write_dataset

    config = _config("Fine-tuning")
    config.pop("preLaunchTask", None)  # the task writes the data set; the test writes its own
    data = write_dataset(tmp_path / "data", train=8, valid=2, seed=3)
    config["args"] = [str(data) if a.endswith("finetune-data") else str(tmp_path / "run") if "finetune-debug" in a
                      else a for a in config["args"]]
    _hit(config, "sat.training.deepspeed_training:training_main", {})
