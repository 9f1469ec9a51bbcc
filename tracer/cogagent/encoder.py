"""CogAgent's high-resolution encoder: EVA2-CLIP-L, a plain-torch ViT (not a SAT model).

Upstream (``utils/models/eva_clip_L_hf.py``, class ``Eva2LargeEncoder``) builds it through
timm helpers from a fixed dictionary: width 1024, 24 blocks, 16 heads of 64, SwiGLU FFN of
``int(1024 * 2.6667) = 2730``, patch 14, qkv biases on q and v only, a LayerNorm inside the
attention output and inside the FFN ("subln"), and 2-D rotary embedding on the patch tokens
interpolated from a 16 x 16 table to the image's grid. This module is that network written
afresh with the same parameter names (``model.patch_embed.proj``, ``model.blocks.N.attn.q_proj``
...) and every width read from :class:`CrossVisionArgs`, so it shrinks.

Facts worth knowing when you step through it:

* ``forward`` returns every token but the CLS one, and **the last block never runs**
  (upstream's loop skips ``i == depth - 1``): the 24th block, ``norm`` and ``head`` are
  weights in the checkpoint that no forward uses;
* the rotary table (``rope.freqs_cos`` / ``freqs_sin``, one row per patch) is a persistent
  buffer shared by every block, so it appears in the state dict once per block and once at
  the top (``model.rope`` and ``model.blocks.N.attn.rope``);
* upstream computes attention with xformers' ``memory_efficient_attention`` (CUDA only).
  Here it is ``torch.nn.functional.scaled_dot_product_attention`` with the same scale and no
  mask: the same numbers up to float rounding, checked against the explicit softmax in the
  tests (:func:`reference_attention`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossVisionArgs", "Eva2LargeEncoder", "EVAVisionTransformer", "reference_attention"]

LAYERNORM_EPS = 1e-6


@dataclass(frozen=True)
class CrossVisionArgs:
    """The high-resolution encoder's widths. Defaults are upstream's hard-coded EVA2-CLIP-L values,
    so a published ``model_config.json`` (which has no ``cross_vision_args``) builds upstream's net."""

    width: int = 1024
    layers: int = 24
    head_width: int = 64
    mlp_ratio: float = 2.6667
    patch_size: int = 14
    pt_hw_seq_len: int = 16  # the rotary table is defined on a 16 x 16 grid (224 / 14) and interpolated
    embed_dim: int = 768  # output width of ``head`` (CLIP's projection; unused by CogAgent)
    in_channels: int = 3

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CrossVisionArgs:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): rotation of interleaved pairs."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., d/2, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class VisionRotaryEmbeddingFast(nn.Module):
    """2-D rotary embedding: the first half of a head's channels rotate with the patch row, the
    second half with the column. Frequencies are LLaMA-style (``10000^-2i/d``), positions are
    the grid ``0 .. grid-1`` rescaled onto the 16-position table the model was pre-trained on."""

    def __init__(self, dim: int, pt_seq_len: int, ft_seq_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))  # (dim/2,)
        t = torch.arange(ft_seq_len) / ft_seq_len * pt_seq_len  # (grid,) interpolated positions
        freqs = torch.einsum("i,f->if", t, freqs).repeat_interleave(2, dim=-1)  # (grid, dim)
        rows = freqs[:, None, :].expand(ft_seq_len, ft_seq_len, dim)
        cols = freqs[None, :, :].expand(ft_seq_len, ft_seq_len, dim)
        table = torch.cat((rows, cols), dim=-1).reshape(ft_seq_len * ft_seq_len, 2 * dim)  # (patches, head)
        self.freqs_cos: torch.Tensor
        self.freqs_sin: torch.Tensor
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.freqs_cos + _rotate_pairs(t) * self.freqs_sin


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Upstream's non-xformers branch: explicit ``softmax(q k^T * scale) v`` on (B, H, N, C)."""
    return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v


class Attention(nn.Module):
    """Self-attention with separate q/k/v projections, biases on q and v only, rotary on the patch
    tokens (not CLS) and a LayerNorm on the attention output before ``proj``."""

    def __init__(self, dim: int, num_heads: int, rope: VisionRotaryEmbeddingFast) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.inner_attn_ln = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = F.linear(x, self.q_proj.weight, self.q_bias).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        k = F.linear(x, self.k_proj.weight).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        v = F.linear(x, self.v_proj.weight, self.v_bias).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        # (B, heads, N, head_dim); rotary on the patches only, CLS (row 0) keeps its vector
        q = torch.cat((q[:, :, :1], self.rope(q[:, :, 1:])), dim=-2).type_as(v)
        k = torch.cat((k[:, :, :1], self.rope(k[:, :, 1:])), dim=-2).type_as(v)
        # CPU stand-in for xformers.ops.memory_efficient_attention (same scale, no mask)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, heads, N, head_dim)
        out = out.transpose(1, 2).reshape(b, n, -1)  # (B, N, width)
        return self.proj(self.inner_attn_ln(out))


class SwiGLU(nn.Module):
    """``w3(LN(silu(w1 x) * w2 x))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=LAYERNORM_EPS)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, rope: VisionRotaryEmbeddingFast) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.attn = Attention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.mlp = SwiGLU(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Conv2d with kernel = stride = patch: (B, 3, H, W) -> (B, H/p * W/p, width), row-major."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.grid = image_size // patch_size
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class EVAVisionTransformer(nn.Module):
    """The ViT: CLS + patches + absolute positions, ``layers`` blocks of which all but the last run."""

    def __init__(self, image_size: int, a: CrossVisionArgs) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(image_size, a.patch_size, a.in_channels, a.width)
        patches = self.patch_embed.grid ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, a.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, a.width))
        self.rope = VisionRotaryEmbeddingFast(a.head_width // 2, a.pt_hw_seq_len, self.patch_embed.grid)
        self.blocks = nn.ModuleList([Block(a.width, a.heads, a.mlp_hidden, self.rope) for _ in range(a.layers)])
        self.depth = a.layers
        self.norm = nn.LayerNorm(a.width, eps=LAYERNORM_EPS)  # in the checkpoint, unused by CogAgent
        self.head = nn.Linear(a.width, a.embed_dim)  # in the checkpoint, unused by CogAgent
        self._init_weights(a.layers)

    def _init_weights(self, depth: int) -> None:
        # Upstream's scheme (truncated normal 0.02, zero biases, unit norms, output projections
        # scaled by 1/sqrt(2 * layer)) so a seeded tiny model has sane activations.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        with torch.no_grad():
            for layer, block in enumerate(self._blocks(), start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                block.mlp.w3.weight.div_(math.sqrt(2.0 * layer))

    def _blocks(self) -> list[Block]:
        return [block for block in self.blocks if isinstance(block, Block)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(image)  # (B, patches, width)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed  # (B, 1+patches, w)
        for block in list(self.blocks)[:-1]:  # upstream skips the last block
            x = block(x)
        return x  # (B, 1+patches, width), before ``norm``


class Eva2LargeEncoder(nn.Module):
    """Upstream's wrapper: ``model`` is the ViT; ``forward`` drops the CLS token."""

    def __init__(self, image_size: int, args: CrossVisionArgs = CrossVisionArgs()) -> None:
        super().__init__()
        if image_size % args.patch_size:
            raise ValueError(f"cross image size {image_size}: expected a multiple of the patch size {args.patch_size}")
        self.model = EVAVisionTransformer(image_size, args)

    def forward(self, image: torch.Tensor, **_: Any) -> torch.Tensor:
        # The cross processor's dummy input_ids / position_ids / attention_mask are ignored, as upstream.
        return self.model(image)[:, 1:, :]  # (B, patches, width)
