"""One CogAgent chat turn: upstream's ``cli_demo_sat.py`` with ``--from_pretrained cogagent-chat``.

The same flow as CogVLM's (:mod:`tracer.cogvlm.chat`), with the one addition CogAgent needs:
a second image processor. Upstream builds both from the config::

    image_processor       = get_image_processor(eva_args['image_size'][0])   # 224: low-res tower
    cross_image_processor = get_image_processor(cross_image_pix)              # 1120: high-res encoder

and ``chat()`` runs both on the same picture: the 224 px tensor goes in as ``vision_image``
(256 tokens, written into the sequence between boi and eoi), the 1120 px tensor as
``cross_image`` (6400 tokens the cross-attention reads; never part of the sequence). The
templates are CogVLM's: ``cogagent-chat`` uses ``chat`` (``<EOI> [INST] {q} [/INST] ``),
``cogagent-vqa`` uses ``vqa`` (``<EOI>Question: {q} Short answer:``), as their configs'
``text_processor_version`` say.

``cross_cache=True`` keeps SAT's cached cross keys/values between decode steps instead of
re-running the high-res encoder at each step as upstream does (see :mod:`tracer.cogagent.model`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..cogvlm.chat import ChatResult, SamplingOptions, add_autoregressive_mixin
from ..cogvlm.chat import chat as cogvlm_chat
from ..cogvlm.config import ModelConfig
from ..cogvlm.image_processor import ImageProcessor, get_image_processor
from ..cogvlm.text_processor import TextProcessor
from ..cogvlm.tokenizer import choose_version, tokenizer_for_config
from .config import load_config
from .model import CogAgentModel

__all__ = ["AgentPipeline", "chat", "cross_cache", "pipeline_for_config"]


@dataclass(frozen=True)
class AgentPipeline:
    """What a turn needs besides the model: the text processor and both image processors."""

    text_processor: TextProcessor
    image_processor: ImageProcessor  # eva_args.image_size (224)
    cross_image_processor: ImageProcessor  # cross_image_pix (1120)
    version: str


def pipeline_for_config(spec: str | Path | ModelConfig, *, version: str | None = None,
                        tokenizer: str | Path | None = None, max_length: int = 2048) -> AgentPipeline:
    """Upstream's processors for a CogAgent config; the template is the config's ``text_processor_version``."""
    config = spec if isinstance(spec, ModelConfig) else load_config(spec)
    chosen = choose_version(version, config.values, config.name)
    text = TextProcessor(tokenizer_for_config(config.values, tokenizer, chosen), max_length,
                         int(config.values["image_length"]))
    cross_pix = int(config.values["cross_image_pix"])
    return AgentPipeline(text, get_image_processor(config.eva["image_size"]), get_image_processor(cross_pix), chosen)


@contextlib.contextmanager
def cross_cache(model: CogAgentModel, enabled: bool) -> Iterator[None]:
    """Within the block, decode steps reuse SAT's cached cross keys/values (``enabled``) or re-run the
    high-res encoder (upstream); the model's own setting is restored afterwards."""
    saved = model.reuse_cross_cache
    model.reuse_cross_cache = enabled
    try:
        yield
    finally:
        model.reuse_cross_cache = saved


def chat(image: str | Path | Image.Image, model: CogAgentModel, pipeline: AgentPipeline, query: str,
         history: Sequence[tuple[str, str]] | None = None, options: SamplingOptions | None = None,
         *, reuse_cross_cache: bool = False) -> ChatResult:
    """Answer ``query`` about ``image``; the model gets SAT's ``CachedAutoregressiveMixin`` if it lacks it."""
    options = SamplingOptions() if options is None else options
    add_autoregressive_mixin(model)
    with cross_cache(model, reuse_cross_cache):
        return cogvlm_chat(image, model, pipeline.text_processor, pipeline.image_processor, query, history,
                           options, cross_image_processor=pipeline.cross_image_processor)


def forward_inputs(pipeline: AgentPipeline, image: Image.Image, query: str) -> dict[str, Any]:
    """The keyword arguments of one context forward (``model(**inputs)``), as ``filling_sequence``
    passes them at its first step: ids, the three masks, position ids, a causal mask, both images."""
    text = pipeline.text_processor
    inputs = text(text.history_to_prompt(query))
    input_ids = inputs.pop("input_ids")  # (1, C)
    _, attention_mask, position_ids = text.get_func(input_ids[0], **inputs)(input_ids[0])
    vision = {f"vision_{k}": v for k, v in pipeline.image_processor(image).items()}
    cross = {f"cross_{k}": v for k, v in pipeline.cross_image_processor(image).items()}
    return {"input_ids": input_ids, "position_ids": position_ids, "attention_mask": attention_mask,
            **inputs, **vision, **cross}
