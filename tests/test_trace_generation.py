"""A whole chat turn traced: from_pretrained construction, the context forward, cached steps,
the KV cache growing, the sampled tokens — and the same answer as untraced."""

from __future__ import annotations

from typing import Any

import pytest

import tracer
from tracer.schema import Trace

CONFIG = "configs/tiny/cogvlm-grounding-generalist"
MAX_LENGTH = 1245  # the prompt is ~1239 tokens with its 1225 image slots: a few new tokens


def _turn(model: Any = None) -> Any:
    from tracer.cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
    from tracer.cogvlm.checkpoint import load_model
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.image_processor import get_image_processor
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import tokenizer_for_config
    from tracer.commands.chat import SAMPLE_IMAGE

    config = load_config(CONFIG)
    text_processor = TextProcessor(tokenizer_for_config(config.values, None, "chat"), MAX_LENGTH,
                                   int(config.values["image_length"]))
    image_processor = get_image_processor(config.eva["image_size"])
    if model is None:
        model, _ = load_model(CONFIG, device="cpu")
        add_autoregressive_mixin(model)
    return chat(str(SAMPLE_IMAGE), model, text_processor, image_processor, "Where is the cake?",
                options=SamplingOptions(max_length=MAX_LENGTH, seed=0, top_k=5))


@pytest.fixture(scope="module")
def turns() -> tuple[Any, Any, Trace]:
    untraced = _turn()
    with tracer.trace() as handle:
        traced = _turn()
    assert handle.trace is not None
    return untraced, traced, handle.trace


def test_chat_turn_is_identical_traced(turns: tuple[Any, Any, Trace]) -> None:
    untraced, traced, _ = turns
    assert traced.output_ids == untraced.output_ids and traced.response == untraced.response


def test_from_pretrained_construction(turns: tuple[Any, Any, Trace]) -> None:
    _, _, trace = turns
    names = [e.name for e in trace.of("construction")]
    assert "BaseModel.from_pretrained" in names and "BaseModel.from_pretrained_base" in names
    assert "load_checkpoint" in names
    by_id = trace.by_id()
    get_model = [e for e in trace.of("construction") if e.name == "get_model"
                 and e.parent is not None and by_id[e.parent].name == "BaseModel.from_pretrained_base"]
    assert len(get_model) == 1 and get_model[0].data["model_path"] == ""
    ar = [e for e in trace.of("construction") if e.data.get("mixin") == "auto-regressive"]
    assert ar[0].data["mixin_class"] == "CachedAutoregressiveMixin"
    assert ar[0].data["hooks_after"]["attention_fn"] == "auto-regressive -> default"


def test_generation_steps(turns: tuple[Any, Any, Trace]) -> None:
    untraced, _, trace = turns
    call = next(e for e in trace.of("generation") if e.data["phase"] == "call")
    steps = [e for e in trace.of("generation") if e.data["phase"] != "call"]
    generated = untraced.generated_ids
    assert call.data["sampled_tokens"] == generated and call.data["steps"] == len(steps) == len(generated)
    context, first = steps[0], steps[1]
    C = untraced.context_length
    assert context.name == "context" and context.data["tokens_fed"] == C and context.data["mems"] is None
    assert first.name == "step 1" and first.data["tokens_fed"] == 1 and first.data["sequence_length"] == C + 1
    # mems: [layers, batch, cached tokens, 2 * hidden] — one more cached token every step.
    assert first.data["mems"]["shape"] == [2, 1, C, 128]
    assert [s.data["sampled_token"] for s in steps] == generated
    assert all(e.parent == call.id for e in steps)
    # Each step's forward is a child of its step; cached steps skip the vision tower.
    children = [e for e in trace.events if e.parent == first.id]
    assert [e.name for e in children] == ["CogVLMModel"]
    # The language model's attention_fn is the KV-cache mixin's, which calls SAT's default
    # for the math (non_conflict old_impl): both are recorded, the default nested inside.
    by_id = trace.by_id()
    lm_attention = [e for e in trace.of("hook") if e.name == "attention_fn" and e.data["model_path"] == ""]
    served = [(e.data["served_by"], by_id[e.parent].name if e.parent is not None else None) for e in lm_attention]
    assert set(served) == {("auto-regressive", "attention_forward"), ("default", "attention_fn")}
    assert sum(s == "auto-regressive" for s, _ in served) == sum(s == "default" for s, _ in served)
    # The vision tower has no cache: SAT's attention_forward_default calls attention_fn_default directly.
    eva_attention = {e.data["served_by"] for e in trace.of("hook")
                     if e.name == "attention_fn" and e.data["model_path"] != ""}
    assert eva_attention == {"default"}


def test_max_steps() -> None:
    from tracer.cogvlm.chat import add_autoregressive_mixin
    from tracer.cogvlm.checkpoint import load_model

    model, _ = load_model(CONFIG, device="cpu")
    add_autoregressive_mixin(model)
    with tracer.trace(categories=["generation", "module"], max_steps=1) as handle:
        result = _turn(model)
    trace = handle.trace
    assert trace is not None
    steps = [e for e in trace.of("generation") if e.data["phase"] != "call"]
    assert [e.name for e in steps] == ["context"] + [f"step {n}" for n in range(1, len(result.generated_ids))]
    assert [e.data["detail"] for e in steps] == ["full", "full"] + ["summary"] * (len(steps) - 2)
    assert [e.data["sampled_token"] for e in steps] == result.generated_ids
    call = next(e for e in trace.of("generation") if e.data["phase"] == "call")
    assert call.data["steps"] == len(result.generated_ids) and call.data["recorded_steps"] == 2
    roots = [e for e in trace.of("module") if e.name == "CogVLMModel"]
    assert len(roots) == 2  # later steps are step summaries: their forwards are not recorded


def test_stream_generation_and_automodel(tmp_path: Any) -> None:
    """stream_filling_sequence steps are recorded too; AutoModel.from_pretrained is construction."""
    from sat.model.base_model import AutoModel

    from tracer.cogvlm.chat import SamplingOptions, add_autoregressive_mixin, stream_chat
    from tracer.cogvlm.checkpoint import generated_checkpoint, loader_args
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.image_processor import get_image_processor
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import tokenizer_for_config
    from tracer.commands.chat import SAMPLE_IMAGE

    config = load_config(CONFIG)
    directory = generated_checkpoint(config)
    text_processor = TextProcessor(tokenizer_for_config(config.values, None, "chat"), MAX_LENGTH,
                                   int(config.values["image_length"]))
    image_processor = get_image_processor(config.eva["image_size"])
    with tracer.trace(categories=["construction", "generation"]) as handle:
        model, _ = AutoModel.from_pretrained(str(directory), args=loader_args(skip_init=True))
        add_autoregressive_mixin(model.eval())
        pieces = list(stream_chat(str(SAMPLE_IMAGE), model, text_processor, image_processor, "Where is the cake?",
                                  options=SamplingOptions(max_length=MAX_LENGTH, seed=0, top_k=5)))
    trace = handle.trace
    assert trace is not None and pieces is not None
    names = [e.name for e in trace.of("construction")]
    start = names.index("AutoModel.from_pretrained")  # after loader_args' BaseModel.get_args
    assert names[start + 1] == "AutoModel.from_pretrained_base"
    assert "load_checkpoint" in names
    steps = [e for e in trace.of("generation")]
    assert steps[0].name == "context" and all(e.data["phase"] != "call" for e in steps)
    assert [e.data["step"] for e in steps] == list(range(len(steps))) and len(steps) > 1
    assert all(isinstance(e.data["sampled_token"], int) for e in steps)
