"""The workloads every section measures: the tiny CogVLM pipeline, one forward, N tokens.

These run inside worker processes (:mod:`bench.worker`) and import torch and SAT. The
pipeline is the one a reader of the article runs (section 3): load the model through
``from_pretrained`` (:func:`tracer.cogvlm.checkpoint.load_model`), add SAT's
``CachedAutoregressiveMixin``, make the tokenizer and the text and image processors, then
one :func:`tracer.cogvlm.chat.chat` turn. The image is drawn here (a fixed synthetic picture),
so the benchmark needs no files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import nn

__all__ = ["DEFAULT_CONFIG", "QUERY", "Pipeline", "chat_turn", "context_inputs", "demo_image",
           "generate", "load_pipeline"]

DEFAULT_CONFIG = "tiny/cogvlm-grounding-generalist"
# One of upstream's grounding phrasings (caption2box), as the grounding checkpoint expects.
QUERY = "Where is the red square in the image? Give its bounding box as [[x0,y0,x1,y1]]."


@dataclass
class Pipeline:
    """A loaded model with everything a chat turn needs."""

    model: nn.Module
    args: Any  # argparse.Namespace
    text_processor: Any  # tracer.cogvlm.text_processor.TextProcessor
    image_processor: Any  # tracer.cogvlm.image_processor.ImageProcessor
    image: Image.Image
    config: Any  # tracer.cogvlm.config.ModelConfig

    @property
    def context_length(self) -> int:
        return int(self.text_processor(self.text_processor.history_to_prompt(QUERY))["input_ids"].shape[1])


def demo_image(width: int = 640, height: int = 480) -> Image.Image:
    """A fixed test picture: a grey gradient with a red square and a blue disc."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((80, 120, 240, 280), fill=(220, 30, 30))
    draw.ellipse((380, 160, 560, 340), fill=(40, 60, 220))
    return image


def load_pipeline(config: str = DEFAULT_CONFIG, *, num_layers: int | None = None) -> Pipeline:
    """``cli_demo.py``'s set-up: model (``from_pretrained``), auto-regressive mixin, processors.

    With ``num_layers`` the model is built (``build_model``, seeded weights) with that many
    language layers instead: ``from_pretrained`` takes its layer count from the config.
    """
    from tracer.cogvlm.chat import add_autoregressive_mixin
    from tracer.cogvlm.config import load_config
    from tracer.cogvlm.image_processor import get_image_processor
    from tracer.cogvlm.text_processor import TextProcessor
    from tracer.cogvlm.tokenizer import tokenizer_for_config

    cfg = load_config(config)
    if num_layers is None:
        from tracer.cogvlm.checkpoint import load_model
        model, args = load_model(cfg)
    else:
        from tracer.cogvlm.build import build_model
        built = build_model(cfg, num_layers=num_layers)
        model, args = built.model, built.args
    add_autoregressive_mixin(model)
    tokenizer = tokenizer_for_config(cfg.values, None, "base")  # the grounding model's template
    text_processor = TextProcessor(tokenizer, max_length=2048, image_length=int(args.image_length))
    image_processor = get_image_processor(args.eva_args["image_size"])
    return Pipeline(model, args, text_processor, image_processor, demo_image(), cfg)


def chat_turn(p: Pipeline, new_tokens: int) -> list[int]:
    """One :func:`chat` turn allowed ``new_tokens`` tokens; returns the generated ids."""
    from tracer.cogvlm.chat import SamplingOptions, chat

    options = SamplingOptions(max_length=p.context_length + new_tokens)
    return list(chat(p.image, p.model, p.text_processor, p.image_processor, QUERY, options=options).generated_ids)


def generate(p: Pipeline, new_tokens: int) -> list[int]:
    """Exactly ``new_tokens`` tokens through SAT's ``filling_sequence`` (greedy, no end token).

    ``chat`` stops at the end-of-sequence token, whose position depends on the weights; the
    scaling sweep needs the count fixed, so this is ``chat`` without the end token.
    """
    from sat.generation.autoregressive_sampling import filling_sequence
    from sat.generation.sampling_strategies import BaseStrategy

    inputs = context_inputs(p, with_positions=False)
    input_ids = inputs.pop("input_ids")[0]  # (C,)
    seq = torch.cat([input_ids, torch.full((new_tokens,), -1, dtype=input_ids.dtype)])  # (C + n,)
    strategy = BaseStrategy(top_k=1, end_tokens=[])
    get_func = p.text_processor.get_func(input_ids, **inputs)
    with torch.no_grad():
        output = filling_sequence(p.model, seq, batch_size=1, strategy=strategy,
                                  get_masks_and_position_ids=get_func, **inputs)[0]  # (1, C + n)
    return [int(t) for t in output[0, len(input_ids):]]


def context_inputs(p: Pipeline, *, with_positions: bool = True) -> dict[str, Any]:
    """The keyword arguments of the chat turn's first (context) forward: ``model(**inputs)``, from
    the adapter's one builder; without positions for ``filling_sequence``, which makes its own."""
    from tracer.cogvlm.adapter import ADAPTER

    inputs = ADAPTER.prompt_inputs(p.config, QUERY, image=p.image, max_length=2048)
    if not with_positions:
        del inputs["attention_mask"], inputs["position_ids"]
    return inputs
