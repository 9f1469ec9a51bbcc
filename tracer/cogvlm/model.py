"""``CogVLMModel``: SAT's LLaMA with a vision tower and vision experts, built from mixins.

This is the class the article's section 2 steps through. Construction order (upstream's,
and the order our tracer shows)::

    CogVLMModel.__init__
      LLaMAModel.__init__
        BaseModel.__init__            -> BaseTransformer (32 layers x 4096)
        add_mixin('rotary', RotaryMixin)      # LLaMA's rotary attention
        add_mixin('lm', LMMixin)              # lm_head
        add_mixin('mlp', LLaMAMlpMixin)       # gated SiLU FFN (gate_proj)
      add_mixin('eva', ImageMixin)            # EVA2CLIPModel + GLU adapter + boi/eoi
      del_mixin('mlp');    add_mixin('mlp', LlamaVisionExpertFCMixin)
      del_mixin('rotary'); add_mixin('rotary', LlamaVisionExpertAttnMixin)

Because SAT's ``MetaModel`` registers every ``BaseModel`` subclass by name, importing this
module makes ``AutoModel.from_pretrained`` resolve ``"model_class": "CogVLMModel"``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from sat.model.official.llama_model import LLaMAModel

from .mixins import ImageMixin, LlamaVisionExpertAttnMixin, LlamaVisionExpertFCMixin, expert_device

__all__ = ["CogVLMModel"]


class CogVLMModel(LLaMAModel):
    """CogVLM on SAT; parameter names match upstream's checkpoints key for key."""

    def __init__(self, args: argparse.Namespace, transformer: Any = None,
                 params_dtype: torch.dtype = torch.float32, **kwargs: Any) -> None:
        super().__init__(args, transformer=transformer, params_dtype=params_dtype, **kwargs)
        self.image_length = args.image_length
        expert: dict[str, Any] = dict(params_dtype=params_dtype, device=expert_device(args),
                                      skip_init=bool(getattr(args, "skip_init", False)))
        self.add_mixin("eva", ImageMixin(args, params_dtype=params_dtype))
        self.del_mixin("mlp")
        self.add_mixin("mlp", LlamaVisionExpertFCMixin(
            args.hidden_size, args.inner_hidden_size, args.num_layers, **expert))
        self.del_mixin("rotary")
        self.add_mixin("rotary", LlamaVisionExpertAttnMixin(
            args.hidden_size, args.num_attention_heads, args.num_layers, **expert))

    @classmethod
    def add_model_specific_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = parser.add_argument_group("CogVLM", "CogVLM Configurations")
        group.add_argument("--image_length", type=int, default=256)
        group.add_argument("--eva_args", type=json.loads, default={})
        return super().add_model_specific_args(parser)

    def forward(self, input_ids: torch.Tensor, vision_expert_mask: torch.Tensor | None = None,
                image_embed_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        # A cached generation step feeds one token: no image, so no expert masks either.
        if input_ids.shape[1] > 1:
            return super().forward(input_ids=input_ids, vision_expert_mask=vision_expert_mask,
                                   image_embed_mask=image_embed_mask, **kwargs)
        return super().forward(input_ids=input_ids, **kwargs)
