"""Upstream CogVLM's own code on a CPU (tracer.cogvlm.upstream) and, given a checkout,
our model against it (scripts/compare_upstream.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from tracer.cogvlm.upstream import memory_efficient_attention, upstream_on_cpu, xformers_stand_in
from tracer.schema import Trace

REPO = Path(__file__).resolve().parent.parent
HAS_XFORMERS = importlib.util.find_spec("xformers") is not None


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v, written out, in xformers' (B, seq, H, dim) layout."""
    scores = torch.einsum("bmhd,bnhd->bhmn", q.double(), k.double()) * scale
    if bias is not None:
        scores = scores + bias.double()
    return torch.einsum("bhmn,bnhd->bmhd", scores.softmax(-1), v.double()).to(q.dtype)


def test_memory_efficient_attention_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 4, 8, generator=g) for n in (5, 7, 7))
    out = memory_efficient_attention(q, k, v, p=0.0, scale=0.3)
    assert out.shape == (2, 5, 4, 8)
    torch.testing.assert_close(out, _reference(q, k, v, 0.3), atol=1e-5, rtol=1e-5)
    # default scale is head_dim ** -0.5; an additive bias is honoured
    bias = torch.randn(2, 4, 5, 7, generator=g)
    torch.testing.assert_close(memory_efficient_attention(q, k, v, attn_bias=bias),
                               _reference(q, k, v, 8 ** -0.5, bias), atol=1e-5, rtol=1e-5)


def test_memory_efficient_attention_refuses_what_it_does_not_reproduce() -> None:
    q = torch.zeros(1, 2, 1, 4)
    with pytest.raises(NotImplementedError, match="attn_bias of type object"):
        memory_efficient_attention(q, q, q, attn_bias=object())
    with pytest.raises(TypeError, match="unsupported arguments"):
        memory_efficient_attention(q, q, q, op=None)
    with pytest.raises(ValueError, match="4-d"):
        memory_efficient_attention(q[0], q[0], q[0])


@pytest.mark.skipif(HAS_XFORMERS, reason="a real xformers is installed: the stand-in is not used")
def test_stand_in_is_importable_inside_and_gone_after() -> None:
    with xformers_stand_in() as installed:
        assert installed
        import xformers.ops as xops

        assert xops.memory_efficient_attention is memory_efficient_attention
    assert "xformers" not in sys.modules and "xformers.ops" not in sys.modules
    with pytest.raises(ImportError):
        import xformers.ops  # noqa: F401


def test_upstream_on_cpu_restores_the_rotary_forward() -> None:
    from sat.model.position_embedding.triton_rotary_embeddings import FastRotaryEmbedding

    before = FastRotaryEmbedding.forward
    with pytest.raises(RuntimeError, match="boom"), upstream_on_cpu():
        assert FastRotaryEmbedding.forward is not before
        raise RuntimeError("boom")
    assert FastRotaryEmbedding.forward is before


@pytest.mark.skipif(not os.environ.get("COGVLM_CHECKOUT"),
                    reason="set COGVLM_CHECKOUT to a checkout of THUDM/CogVLM (upstream code is not vendored)")
def test_our_model_equals_upstream_code(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import compare_upstream

    facts = compare_upstream.compare(Path(os.environ["COGVLM_CHECKOUT"]), tmp_path)
    assert facts["bit_identical"], facts["max_abs_difference"]
    assert {(m, h, s) for m, h, s, _ in facts["served"]} >= {
        ("model", "mlp_forward", "mlp"), ("model", "attention_forward", "rotary"),
        ("mixins.eva.vit_model", "attention_fn", "xattn")}
    assert (tmp_path / "trace.json").is_file()
    # Upstream's model class gets the CogVLM adapter: its forward's own masks give the token layout.
    with (tmp_path / "trace.json").open(encoding="utf-8") as f:
        layout = Trace.load(f).meta["token_layout"]
    assert sum(layout["image_rope_mask"]) == sum(layout["image_embed_mask"]) - 2 > 0
    assert sum(layout["vision_expert_mask"]) == sum(layout["image_rope_mask"]) + 1


@pytest.mark.skipif(not os.environ.get("COGVLM_CHECKOUT"),
                    reason="set COGVLM_CHECKOUT to a checkout of THUDM/CogVLM (upstream code is not vendored)")
def test_readme_upstream_example_runs_under_cogtrace_run_cpu(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The README's ``cogtrace run --cpu ... examples/upstream_cogvlm.py CHECKOUT`` line."""
    from tracer.cli import main

    out = tmp_path / "up"
    assert main(["run", "--cpu", "-o", str(out), str(REPO / "examples" / "upstream_cogvlm.py"),
                 os.environ["COGVLM_CHECKOUT"]]) == 0
    assert "utils.models.cogvlm_model.CogVLMModel: logits [1, " in capsys.readouterr().out
    with (out / "trace.json").open(encoding="utf-8") as f:
        trace = Trace.load(f)
    assert trace.meta["cpu_substitutions"] and trace.meta["model_class"] == "CogVLMModel"
    assert any(e.data.get("served_by") == "xattn" for e in trace.of("hook"))
