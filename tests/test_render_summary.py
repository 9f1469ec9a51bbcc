"""``cogtrace summary``: input checks (fast), and the differences text from a measured result.

The full measurement (torchinfo and cogtrace on a real forward, ~10 s) runs in
``scripts/compare_torchinfo.py``, which writes docs/torchinfo-vs-cogtrace.md.
"""

from __future__ import annotations

import pytest

from tracer.cli import main
from tracer.commands.summary import Comparison, differences


@pytest.mark.parametrize("argv, message", [
    (["configs/full/cogvlm-grounding-generalist"], "too big to run a forward"),
    (["no/such/config"], "no such config"),
    (["--depth", "0"], "--depth 0"),
])
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["summary", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_differences_name_every_measured_gap() -> None:
    c = Comparison(torchinfo_text="", cogtrace_text="", torchinfo_rows=132, torchinfo_recursive_rows=60,
                   torchinfo_total_params=1_008_240, torchinfo_rows_naming_hooks=0,
                   torchinfo_none_kwarg_error="TypeError: unsupported operand",
                   layers_without_shapes=["mixins.eva.vit_model.transformer.layers.0"],
                   text_only_missing=["mixins.mlp.vision_gate_proj.0"], text_only_missing_params=11_264,
                   cogtrace_total_params=644_000, hook_dispatches=18, hook_dispatches_by_mixin={"mlp": 2},
                   expert_attributions=[("mixins.mlp.vision_gate_proj.0", "transformer.layers.0.mlp")],
                   vision_tokens=1226, language_tokens=7, construction_calls=32, mixin_calls=12)
    text = differences(c)
    for needle in ("18 (mlp 2)", "60 of torchinfo's 132", "1226 tokens to the vision expert",
                   "mixins.mlp.vision_gate_proj.0 -> transformer.layers.0.mlp", "11,264 parameters",
                   "torchinfo 1,008,240, cogtrace 644,000", "cogtrace 32 (12 add_mixin/del_mixin)", "TypeError"):
        assert needle in text, needle
