"""Upstream CogAgent's own code on a CPU (tracer.cogagent.upstream) and, given a checkout, our
CogAgent against it (scripts/compare_upstream_cogagent.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from tracer.cogagent.upstream import drop_path, timm_stand_in, to_2tuple

REPO = Path(__file__).resolve().parent.parent
HAS_TIMM = importlib.util.find_spec("timm") is not None


def test_timm_helpers_behave_like_timms() -> None:
    x = torch.randn(4, 3, 2)
    assert drop_path(x, 0.5, training=False) is x and drop_path(x, 0.0, training=True) is x
    torch.manual_seed(0)
    dropped = drop_path(x, 0.5, training=True)  # whole samples are zeroed or scaled by 1 / keep
    for sample, original in zip(dropped, x, strict=True):
        assert torch.equal(sample, torch.zeros_like(sample)) or torch.allclose(sample, original * 2)
    assert to_2tuple(14) == (14, 14) and to_2tuple([224, 112]) == (224, 112)


@pytest.mark.skipif(HAS_TIMM, reason="a real timm is installed: the stand-in is not used")
def test_timm_stand_in_is_importable_inside_and_gone_after() -> None:
    with timm_stand_in() as installed:
        assert installed
        from timm.layers import trunc_normal_ as new_path
        from timm.models.layers import drop_path as imported
        from timm.models.layers import trunc_normal_

        assert imported is drop_path and trunc_normal_ is new_path is torch.nn.init.trunc_normal_
    assert not [name for name in sys.modules if name == "timm" or name.startswith("timm.")]


@pytest.mark.skipif(not os.environ.get("COGVLM_CHECKOUT"),
                    reason="set COGVLM_CHECKOUT to a checkout of THUDM/CogVLM (upstream code is not vendored)")
def test_our_cogagent_equals_upstream_code(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import compare_upstream_cogagent

    facts = compare_upstream_cogagent.compare(Path(os.environ["COGVLM_CHECKOUT"]), tmp_path)
    assert facts["bit_identical"], facts["max_abs_difference"]
    assert facts["cross_dispatches"] == [(0, "default"), (1, "default")] and facts["encoder_runs"] == 1
    assert (tmp_path / "trace.json").is_file()


@pytest.mark.skipif(HAS_TIMM, reason="a real timm is installed: the stand-in is not used")
def test_run_cpu_provides_timm_and_names_it(tmp_path: Path) -> None:
    from tracer.cli import main
    from tracer.schema import Trace

    script = tmp_path / "uses_timm.py"
    script.write_text("from timm.models.layers import drop_path, to_2tuple, trunc_normal_\n"
                      "assert to_2tuple(1120) == (1120, 1120)\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--cpu", "-o", str(out), str(script)]) == 0
    with open(out / "trace.json", encoding="utf-8") as f:
        trace = Trace.load(f)
    assert any(s.startswith("timm:") for s in trace.meta["cpu_substitutions"])
    assert "timm" not in sys.modules  # gone after the run
