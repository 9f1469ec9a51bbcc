"""A tiny CogAgent chat turn on CPU, traced: the same answer and bit-identical logits as untraced;
the high-res encoder re-run at every decode step (upstream) or skipped (``reuse_cross_cache``),
with the same logits either way; the trace's cross-attention facts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

import tracer
from tracer.cogagent.build import build_model
from tracer.cogagent.chat import chat, forward_inputs, pipeline_for_config
from tracer.cogagent.encoder import Attention, VisionRotaryEmbeddingFast, reference_attention
from tracer.cogagent.facts import cross_steps, render_cross_steps
from tracer.cogagent.model import CogAgentModel, CrossInputError
from tracer.cogvlm import SAMPLE_IMAGE
from tracer.cogvlm.chat import ChatResult, SamplingOptions, add_autoregressive_mixin
from tracer.schema import Trace

CONFIG = "tiny/cogagent-chat"
MAX_LENGTH = 278  # 273 prompt tokens (256 image slots): 5 new tokens
QUERY = "What is on the screen?"


@pytest.fixture(scope="module")
def model() -> CogAgentModel:
    return build_model(CONFIG).model


def _turn(model: CogAgentModel, reuse: bool = False) -> ChatResult:
    pipeline = pipeline_for_config(CONFIG, max_length=MAX_LENGTH)
    return chat(str(SAMPLE_IMAGE), model, pipeline, QUERY,
                options=SamplingOptions(max_length=MAX_LENGTH, seed=0, top_k=5), reuse_cross_cache=reuse)


@pytest.fixture(scope="module")
def turns(model: CogAgentModel) -> dict[str, Any]:
    untraced = _turn(model)
    with tracer.trace() as upstream_way:
        traced = _turn(model)
    with tracer.trace() as cached_way:
        cached = _turn(model, reuse=True)
    assert upstream_way.trace is not None and cached_way.trace is not None
    return {"untraced": untraced, "traced": traced, "cached": cached,
            "trace": upstream_way.trace, "cached_trace": cached_way.trace}


def test_traced_turn_is_identical(turns: dict[str, Any]) -> None:
    untraced, traced = turns["untraced"], turns["traced"]
    assert traced.output_ids == untraced.output_ids and traced.response == untraced.response
    assert untraced.context_length == 273 and len(untraced.generated_ids) == MAX_LENGTH - 273


def test_logits_bit_identical_traced(model: CogAgentModel) -> None:
    inputs = forward_inputs(pipeline_for_config(CONFIG), Image.open(SAMPLE_IMAGE).convert("RGB"), QUERY)
    with torch.no_grad():
        plain = model(**inputs)[0]
        with tracer.trace():
            traced = model(**inputs)[0]
    assert torch.equal(plain, traced)


def test_reusing_the_cross_cache_changes_no_logit(model: CogAgentModel, turns: dict[str, Any]) -> None:
    assert turns["cached"].output_ids == turns["untraced"].output_ids
    add_autoregressive_mixin(model)
    inputs = forward_inputs(pipeline_for_config(CONFIG), Image.open(SAMPLE_IMAGE).convert("RGB"), QUERY)
    with torch.no_grad():
        _, *layers = model(**inputs, mems=None)
        mems = torch.stack([layer["mem_kv"] for layer in layers])  # (layers, B, C, 2h)
        mem_cross = [layer["mem_cross"] for layer in layers]  # per layer (k, v), (B, heads, 6400, d)
        C = inputs["input_ids"].shape[1]
        step = dict(inputs, input_ids=torch.tensor([[5]]), position_ids=torch.tensor([[C]]),
                    attention_mask=torch.ones(1, 1, 1, C + 1), mems=mems, encoder_outputs=mem_cross)
        upstream_way = model(**step)[0]
        model.reuse_cross_cache = True
        try:
            cached = model(**step)[0]
        finally:
            model.reuse_cross_cache = False
    assert upstream_way.shape == (1, 1, 2048) and torch.equal(upstream_way, cached)


def test_encoder_runs_at_every_step_by_default(turns: dict[str, Any]) -> None:
    steps = cross_steps(turns["trace"])
    assert [s.name for s in steps] == ["context"] + [f"step {i}" for i in range(1, len(steps))]
    assert all(s.encoder_ran and s.encoder_output == (1, 6400, 32) for s in steps)
    for s in steps:
        assert [c.layer_id for c in s.cross] == [0, 1] and not any(c.from_cache for c in s.cross)
        assert all(c.keys == (1, 4, 6400, 8) for c in s.cross)
    assert steps[0].cross[0].query == (1, 4, 273, 8) and steps[1].cross[0].query == (1, 4, 1, 8)


def test_reuse_skips_the_encoder_after_the_context(turns: dict[str, Any]) -> None:
    steps = cross_steps(turns["cached_trace"])
    assert steps[0].encoder_ran and not any(s.encoder_ran for s in steps[1:])
    assert not any(c.from_cache for c in steps[0].cross)
    assert all(c.from_cache and c.keys == (1, 4, 6400, 8) for s in steps[1:] for c in s.cross)
    table = render_cross_steps(turns["cached_trace"])
    assert "skipped" in table and "mem_cross cache" in table and "1x4x6400x8" in table


def test_construction_shows_the_encoder_mixin(turns: dict[str, Any], model: CogAgentModel) -> None:
    with tracer.trace() as handle:
        build_model(CONFIG)
    trace: Trace = handle.trace  # type: ignore[assignment]
    added = [e for e in trace.of("construction") if e.name == "BaseModel.add_mixin" and e.data.get("mixin") == "encoder"]
    assert len(added) == 1 and added[0].data["mixin_class"] == "ExternalVisionModel"
    init = next(e for e in trace.of("construction") if e.name == "ExternalVisionModel.__init__")
    assert init.data["model_path"] == "mixins.encoder"
    assert added[0].data["params_after"] - added[0].data["params_before"] == init.data["params"] == 455_200
    assert model.reuse_cross_cache is False  # chat() restored the model's setting


def test_cpu_attention_matches_the_explicit_formula() -> None:
    """The xformers memory_efficient_attention stand-in (SDPA) against upstream's non-xformers branch."""
    torch.manual_seed(0)
    rope = VisionRotaryEmbeddingFast(8, 16, 4)
    attn = Attention(32, 2, rope).eval()
    x = torch.randn(2, 17, 32)
    b, n, _ = x.shape
    with torch.no_grad():
        out = attn(x)
        q = torch.nn.functional.linear(x, attn.q_proj.weight, attn.q_bias).reshape(b, n, 2, -1).transpose(1, 2)
        k = attn.k_proj(x).reshape(b, n, 2, -1).transpose(1, 2)
        v = torch.nn.functional.linear(x, attn.v_proj.weight, attn.v_bias).reshape(b, n, 2, -1).transpose(1, 2)
        q = torch.cat((q[:, :, :1], rope(q[:, :, 1:])), dim=-2)
        k = torch.cat((k[:, :, :1], rope(k[:, :, 1:])), dim=-2)
        ref = reference_attention(q, k, v, attn.scale).transpose(1, 2).reshape(b, n, -1)
        ref = attn.proj(attn.inner_attn_ln(ref))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("change", "message"), [
    ({"cross_image": None}, "no cross_image: expected the high-resolution copy"),
    ({"cross_image": torch.zeros(1, 3, 1008, 1008)}, r"cross_image of shape \(1, 3, 1008, 1008\): expected \(B, 3, 1120"),
])
def test_bad_cross_image_is_one_line(model: CogAgentModel, change: dict[str, Any], message: str) -> None:
    inputs = forward_inputs(pipeline_for_config(CONFIG), Image.open(SAMPLE_IMAGE).convert("RGB"), QUERY)
    inputs.update({k: v for k, v in change.items() if v is not None})
    for k in [k for k, v in change.items() if v is None]:
        del inputs[k]
    with pytest.raises(CrossInputError, match=message) as info, torch.no_grad():
        model(**inputs)
    assert "\n" not in str(info.value)
