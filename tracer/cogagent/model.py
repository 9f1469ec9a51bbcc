"""``CogAgentModel``: CogVLM plus a high-resolution image read through cross-attention.

Construction order (upstream's, and what the tracer shows)::

    CogAgentModel.__init__
      LLaMAModel.__init__
        BaseModel.__init__   -> BaseTransformer: is_decoder=True, so every layer also gets
                                SAT's CrossAttention (query, key_value, dense) and a
                                post_cross_attention_layernorm
        add_mixin('rotary'), add_mixin('lm'), add_mixin('mlp')
      add_mixin('eva', ImageMixin)              # low-res EVA2-CLIP-E tower (224 px, 256 tokens)
      del_mixin('mlp');    add_mixin('mlp', LlamaVisionExpertFCMixin)
      del_mixin('rotary'); add_mixin('rotary', LlamaVisionExpertAttnMixin)
      add_mixin('encoder', ExternalVisionModel) # high-res EVA2-CLIP-L (1120 px, 6400 tokens)

A forward runs the ``encoder`` on ``cross_image`` and hands its output to SAT as
``encoder_outputs``; each layer's cross-attention is SAT's built-in
``cross_attention_forward_default`` (no mixin serves it), with the text+low-res sequence as
queries and the high-res tokens as keys and values.

Cached generation, a fact upstream's code hides: SAT's ``filling_sequence`` keeps every
layer's cross keys/values (``mem_cross``) after the first step and passes them back as
``encoder_outputs``. Upstream's ``forward`` looks for ``mems_cross`` instead (a key SAT never
sends) and so re-runs the whole high-res encoder and overwrites ``encoder_outputs`` at every
decode step. That is the default here too. ``reuse_cross_cache=True`` (set on the model, or
``cross_cache=True`` in :func:`~tracer.cogagent.chat.chat`) keeps SAT's cached keys/values
instead; the logits are the same, bit for bit (tested), only the encoder's work is skipped.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from sat.model.official.llama_model import LLaMAModel

from ..cogvlm.config import ConfigError
from ..cogvlm.mixins import LlamaVisionExpertAttnMixin, LlamaVisionExpertFCMixin, expert_device
from .mixins import ExternalVisionModel, ImageMixin

__all__ = ["CogAgentModel", "CrossInputError", "check_cross_inputs"]


class CrossInputError(ConfigError):
    """A forward without a usable high-resolution image; the message is one line."""


def check_cross_inputs(cross_inputs: dict[str, Any], pix: int) -> None:
    """Refuse a missing or wrongly sized ``cross_image`` before the encoder's patch conv does, deep inside."""
    image = cross_inputs.get("image")
    if not isinstance(image, torch.Tensor):
        raise CrossInputError(f"no cross_image: expected the high-resolution copy of the picture, a (B, 3, {pix}, {pix}) "
                              f"tensor, with cross_attention_mask (the cross image processor makes both)")
    if image.dim() != 4 or tuple(image.shape[-2:]) != (pix, pix):
        raise CrossInputError(f"cross_image of shape {tuple(image.shape)}: expected (B, 3, {pix}, {pix}) "
                              f"(cross_image_pix = {pix})")
    if "attention_mask" not in cross_inputs:
        raise CrossInputError("no cross_attention_mask: expected the cross image processor's (B, 1) ones "
                              "(SAT's cross-attention requires the argument)")


class CogAgentModel(LLaMAModel):
    """CogAgent on SAT; parameter names match upstream's checkpoints key for key."""

    def __init__(self, args: argparse.Namespace, transformer: Any = None,
                 params_dtype: torch.dtype = torch.float32, **kwargs: Any) -> None:
        super().__init__(args, transformer=transformer, params_dtype=params_dtype, **kwargs)
        self.image_length = args.image_length
        self.cross_image_pix = args.cross_image_pix
        # False = upstream's behaviour: the high-res encoder runs at every forward, decode steps included.
        self.reuse_cross_cache = False
        expert: dict[str, Any] = dict(params_dtype=params_dtype, device=expert_device(args),
                                      skip_init=bool(getattr(args, "skip_init", False)))
        self.add_mixin("eva", ImageMixin(args, params_dtype=params_dtype))
        self.del_mixin("mlp")
        self.add_mixin("mlp", LlamaVisionExpertFCMixin(
            args.hidden_size, args.inner_hidden_size, args.num_layers, **expert))
        self.del_mixin("rotary")
        self.add_mixin("rotary", LlamaVisionExpertAttnMixin(
            args.hidden_size, args.num_attention_heads, args.num_layers, **expert))
        self.add_mixin("encoder", ExternalVisionModel(args))

    @classmethod
    def add_model_specific_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = parser.add_argument_group("CogAgent", "CogAgent Configurations")
        group.add_argument("--image_length", type=int, default=256)
        group.add_argument("--cross_image_pix", type=int, default=1120)
        group.add_argument("--eva_args", type=json.loads, default={})
        group.add_argument("--cross_vision_args", type=json.loads, default={})
        return super().add_model_specific_args(parser)

    def forward(self, input_ids: torch.Tensor, vision_expert_mask: torch.Tensor | None = None,
                image_embed_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        cross_inputs = {k[len("cross_"):]: v for k, v in kwargs.items() if k.startswith("cross_")}
        cached = kwargs.get("encoder_outputs")
        if not (self.reuse_cross_cache and isinstance(cached, list)):
            check_cross_inputs(cross_inputs, self.cross_image_pix)
            # Upstream: run the encoder; SAT's cached per-layer keys/values, if any, are overwritten.
            kwargs["encoder_outputs"] = self.get_mixin("encoder")(**cross_inputs)  # (B, cross tokens, width)
        kwargs["cross_attention_mask"] = cross_inputs["attention_mask"]  # (1, 1) ones: attend to every token
        if input_ids.shape[1] > 1:
            return super().forward(input_ids=input_ids, vision_expert_mask=vision_expert_mask,
                                   image_embed_mask=image_embed_mask, **kwargs)
        return super().forward(input_ids=input_ids, **kwargs)

