"""CogAgent's two image mixins: the low-resolution ``eva`` (CogVLM's, plus a position table) and the
high-resolution ``encoder`` whose output every layer's cross-attention reads.

Names and shapes are upstream's (``utils/models/cogagent_model.py``). What differs, and why:

* widths come from the config: the ``eva`` position table is ``(image_length, eva hidden)`` and
  the ``encoder``'s is ``(cross tokens, cross width)`` (upstream hard-codes 1792, 1024 and patch
  14, which breaks any shrunken model);
* the high-resolution encoder is :class:`~tracer.cogagent.encoder.Eva2LargeEncoder` (plain torch,
  no timm or xformers), built from ``cross_vision_args``.
"""

from __future__ import annotations

import argparse

import torch
from sat.model.base_model import BaseMixin
from torch import nn

from ..cogvlm.mixins import ImageMixin as CogVLMImageMixin
from .encoder import CrossVisionArgs, Eva2LargeEncoder

__all__ = ["ExternalVisionModel", "ImageMixin", "cross_vision_args"]


def cross_vision_args(args: argparse.Namespace) -> CrossVisionArgs:
    """The high-resolution encoder's widths: ``args.cross_vision_args`` over upstream's EVA2-CLIP-L."""
    return CrossVisionArgs.from_dict(dict(getattr(args, "cross_vision_args", None) or {}))


class ImageMixin(CogVLMImageMixin):
    """Mixin ``eva``: CogVLM's low-resolution tower and GLU adapter, plus a learned position table
    added to the tower's output before the adapter (upstream's ``pos_embed``, zeros at init)."""

    def __init__(self, args: argparse.Namespace, params_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(args, params_dtype=params_dtype)
        self.pos_embed = nn.Parameter(torch.zeros(args.image_length, self.in_features, dtype=params_dtype))

    def adapt(self, image_emb: torch.Tensor) -> torch.Tensor:
        return self.linear_proj(image_emb + self.pos_embed.unsqueeze(0))  # (B, L, eva) -> (B, L, hidden)


class ExternalVisionModel(BaseMixin):
    """Mixin ``encoder``: the high-resolution EVA2-CLIP-L plus a learned position table.

    Not a hook provider: ``CogAgentModel.forward`` calls it directly and passes its output
    (B, cross tokens, cross width) to SAT as ``encoder_outputs``; SAT's built-in
    ``cross_attention_forward`` in every layer projects it to keys and values.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        widths = cross_vision_args(args)
        self.vit = Eva2LargeEncoder(int(args.cross_image_pix), widths)
        self.cross_image_length = (int(args.cross_image_pix) // widths.patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(self.cross_image_length, widths.width))

    def forward(self, image: torch.Tensor, **kw_args: object) -> torch.Tensor:
        return self.vit(image, **kw_args) + self.pos_embed.unsqueeze(0)  # (B, cross tokens, cross width)
