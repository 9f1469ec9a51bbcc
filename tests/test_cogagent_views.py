"""CogAgent through the adapter seam: registry, generated checkpoint through SAT's from_pretrained,
a traced chat turn made the way ``cogtrace report`` makes it, and the views drawn from that trace."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from PIL import Image

import tracer
from tracer.adapters import adapter_for_config, entry_for_config
from tracer.cogvlm import SAMPLE_IMAGE
from tracer.cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
from tracer.cogvlm.image_processor import get_image_processor, open_image
from tracer.cogvlm.text_processor import TextProcessor
from tracer.cogvlm.tokenizer import tokenizer_for_config
from tracer.cogvlm.tokens import layout_png
from tracer.render.diagrams import to_svg
from tracer.render.registry import views_for
from tracer.schema import Trace

CONFIG = "configs/tiny/cogagent-chat"
MAX_LENGTH = 276


@pytest.fixture(scope="module")
def traced() -> dict[str, Any]:
    adapter = adapter_for_config(CONFIG)
    config = adapter.load_config(CONFIG)
    text = TextProcessor(tokenizer_for_config(config.values, None, "chat"), MAX_LENGTH,
                         int(config.values["image_length"]))
    with tracer.trace(meta={"config": CONFIG}) as handle:
        model, args = adapter.load(config, device="cpu")
        add_autoregressive_mixin(model)
        result = chat(open_image(SAMPLE_IMAGE), model, text, get_image_processor(config.eva["image_size"]),
                      "What is on the screen?", options=SamplingOptions(max_length=MAX_LENGTH, seed=0),
                      **adapter.chat_options(config))
        handle.meta["token_layout"] = adapter.prompt_layout(text, result.prompt)
    assert handle.trace is not None
    return {"adapter": adapter, "model": model, "args": args, "result": result, "trace": handle.trace}


def test_registry_picks_the_cogagent_adapter(traced: dict[str, Any]) -> None:
    assert entry_for_config(CONFIG).name == "cogagent" and entry_for_config("tiny/cogvlm-chat-v1.1").name == "cogvlm"
    assert traced["adapter"].name == "cogagent" and type(traced["model"]).__name__ == "CogAgentModel"


def test_load_goes_through_sat_from_pretrained(traced: dict[str, Any]) -> None:
    names = [e.name for e in traced["trace"].of("construction")]
    assert "BaseModel.from_pretrained" in names and "load_checkpoint" in names
    assert traced["args"].cross_image_pix == 1120 and traced["result"].context_length == 273


def test_forward_inputs_add_the_high_res_image(traced: dict[str, Any]) -> None:
    adapter, model, args = traced["adapter"], traced["model"], traced["args"]
    inputs = adapter.forward_inputs(args, text_tokens=4, seed=0)
    assert inputs["cross_image"].shape == (1, 3, 1120, 1120) and inputs["vision_image"].shape == (1, 3, 224, 224)
    with torch.no_grad():
        logits = model(**inputs)[0]
    assert logits.shape == (1, 1 + 258 + 4, 2048)


def test_cross_attention_has_no_expert_split(traced: dict[str, Any]) -> None:
    context = [e for e in traced["trace"].of("hook") if e.data.get("model_path") == ""  # the LM, not the towers
               and e.name in ("cross_attention_forward", "mlp_forward") and e.data["inputs"][0]["shape"][1] > 1]
    assert len(context) == 4  # 2 layers x (cross-attention, FFN) in the context forward
    assert all(("branch" in e.data) == (e.name == "mlp_forward") for e in context)


def test_views_are_cogagents(traced: dict[str, Any]) -> None:
    trace: Trace = traced["trace"]
    views = views_for(trace)
    assert {"architecture", "tokens", "cross", "hooks", "steps"} <= set(views)
    dot = views["architecture"].dot(trace)  # type: ignore[misc]
    assert "low resolution: into the sequence" in dot and "high resolution: keys and values only" in dot
    assert "encoder_outputs (1, 6400, 32)" in dot and "2 blocks, the last never runs" in dot
    assert '"picture" -> "high" [label="1120 px"]' in dot and "logits (1, 273, 2048)" in dot
    assert to_svg(dot).lstrip().startswith(b"<?xml")  # real Graphviz
    tokens = views["tokens"].render_text(trace)
    assert "1120x1120 px -> 80x80 grid of 14 px patches = 6400 tokens of width 32" in tokens
    assert "image_rope_mask" in tokens
    png = views["tokens"].png(trace)  # type: ignore[misc]
    assert Image.open(io.BytesIO(png)).height > Image.open(io.BytesIO(layout_png(trace))).height  # + the grid
    cross = views["cross"].render_text(trace)
    assert cross.count("ran -> 1x6400x32") == len(traced["result"].generated_ids)  # upstream: every step
