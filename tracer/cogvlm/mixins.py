"""CogVLM's three mixins, written on SAT: the vision tower, the vision-expert FFN and attention.

CogVLM is SAT's ``LLaMAModel`` plus three mixins (see ``model.py`` for the order in which
they are added and removed). Parameter names and shapes here are exactly those of upstream
CogVLM's ``utils/models/cogvlm_model.py`` and ``mixin.py``, so a published checkpoint loads
with no missing or unexpected keys. What differs from upstream, and why:

* the GLU adapter's input width comes from ``eva_args['hidden_size']`` (upstream hard-codes
  1792, which breaks any shrunken vision tower);
* dtype, device and ``skip_init`` are passed through instead of a hard-coded
  ``device=torch.device('cpu')`` and ``skip_init=True`` — a tiny model gets seeded weights
  (``skip_init`` leaves uninitialised memory and NaN logits) and the full model can be
  built on the meta device;
* rotary embedding is :class:`~tracer.rotary.AnyDeviceRotaryEmbedding`, so it runs on
  a CPU; on CUDA it is SAT's Triton kernel;
* the vision tower is SAT's own ``EVA2CLIPModel`` (upstream's copy imports xformers).

Hook functions follow SAT's convention: they are called as ``hook(hidden_states, **kw_args)``
with ``self`` bound to the mixin; the layer whose weights they share is
``self.transformer.layers[kw_args['layer_id']]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from copy import deepcopy
from typing import Any

import torch
import torch.nn as nn
from sat import mpu
from sat.model.base_model import BaseMixin
from sat.model.official.eva_clip_model import EVA2CLIPModel
from sat.mpu.layers import ColumnParallelLinear, RowParallelLinear
from sat.mpu.utils import divide, split_tensor_along_last_dim, unscaled_init_method
from sat.transformer_defaults import attention_fn_default

from ..rotary import AnyDeviceRotaryEmbedding

__all__ = ["GLU", "ImageMixin", "LlamaVisionExpertAttnMixin", "LlamaVisionExpertFCMixin", "expert_device",
           "vision_args"]

# Upstream builds vision experts for the first 32 layers (all of them in the 32-layer model).
NUM_VISION_LAYERS = 32
# Same spread as LLaMAModel's own linear layers (init_method_std=0.01).
_INIT = unscaled_init_method(0.01)

# Arguments the vision tower inherits from the language model's Namespace: where and how
# to build, never what to build (the architecture comes from eva_args). ``seed`` matters:
# EVA2CLIPModel is a BaseModel, whose __init__ re-seeds the RNG with ``args.seed`` (SAT's
# _simple_init) -- without it, the tower and every weight built after it came from seed 1234
# whatever seed the user asked for.
_INHERITED = ("world_size", "rank", "local_rank", "skip_init", "use_gpu_initialization",
              "deepspeed", "bf16", "fp16", "mode", "device", "model_parallel_size", "seed")


def vision_args(args: argparse.Namespace) -> argparse.Namespace:
    """The ``EVA2CLIPModel`` Namespace: ``args.eva_args`` plus the run-time settings of ``args``."""
    merged: dict[str, Any] = deepcopy(dict(args.eva_args))
    for key in _INHERITED:
        if hasattr(args, key):
            merged[key] = getattr(args, key)
    if getattr(args, "mode", "inference") != "inference":
        merged.update(hidden_dropout=0.0, attention_dropout=0.0)
    return EVA2CLIPModel.get_args(**merged)


def expert_device(args: argparse.Namespace) -> torch.device:
    """Where SAT's BaseModel puts the transformer's weights at build time (get_model moves
    the model to ``args.device`` afterwards); the mixins follow the same rule."""
    if getattr(args, "use_gpu_initialization", False):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class GLU(nn.Module):
    """The vision adapter: EVA width -> LM width, then a gated SiLU FFN (CogVLM paper, §2)."""

    def __init__(self, in_features: int, hidden_size: int, inner_hidden_size: int,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.linear_proj = nn.Linear(in_features, hidden_size, bias=False, dtype=dtype)
        self.norm1 = nn.LayerNorm(hidden_size, dtype=dtype)
        self.act1 = nn.GELU()
        self.act2 = nn.functional.silu
        self.dense_h_to_4h = nn.Linear(hidden_size, inner_hidden_size, bias=False, dtype=dtype)
        self.gate_proj = nn.Linear(hidden_size, inner_hidden_size, bias=False, dtype=dtype)
        self.dense_4h_to_h = nn.Linear(inner_hidden_size, hidden_size, bias=False, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_proj(x)  # (B, L, eva_hidden) -> (B, L, hidden)
        x = self.act1(self.norm1(x))
        x = self.act2(self.gate_proj(x)) * self.dense_h_to_4h(x)  # (B, L, inner)
        return self.dense_4h_to_h(x)  # (B, L, hidden)


class ImageMixin(BaseMixin):
    """Mixin ``eva``: runs the vision tower and writes its output into the word embeddings.

    Serves the ``word_embedding_forward`` hook. The sequence holds ``[boi] L image slots [eoi]``
    where ``image_embed_mask`` is 1; those L+2 rows are replaced by
    ``boi, GLU(EVA(image)), eoi``; all other rows are ordinary token embeddings.
    """

    def __init__(self, args: argparse.Namespace, params_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        eva = vision_args(args)
        self.vit_model = EVA2CLIPModel(eva, params_dtype=params_dtype)
        self.in_features = int(eva.hidden_size)
        self.linear_proj = GLU(self.in_features, args.hidden_size, args.inner_hidden_size, dtype=params_dtype)
        self.image_length = args.image_length
        self.boi = nn.Parameter(torch.zeros(1, 1, args.hidden_size, dtype=params_dtype))
        self.eoi = nn.Parameter(torch.zeros(1, 1, args.hidden_size, dtype=params_dtype))

    def adapt(self, image_emb: torch.Tensor) -> torch.Tensor:
        """The tower's output to LM width (CogAgent's subclass adds a position table first)."""
        return self.linear_proj(image_emb)

    def word_embedding_forward(self, input_ids: torch.Tensor, output_cross_layer: dict,
                               **kw_args: Any) -> torch.Tensor:
        # Arguments named vision_* (minus the expert mask) are the vision tower's inputs.
        vision_inputs = {k[len("vision_"):]: v for k, v in kw_args.items()
                         if k.startswith("vision_") and k != "vision_expert_mask"}
        if input_ids.shape[1] == 1 or not vision_inputs:
            # A generation step with the KV cache, or a text-only prompt: plain embeddings.
            return self.transformer.word_embeddings(input_ids)
        image_emb = self.vit_model(**vision_inputs)[0]  # (B, L, eva_hidden); CLS already dropped
        image_emb = self.adapt(image_emb)  # (B, L, hidden)

        image_embed_mask = kw_args["image_embed_mask"].bool()  # (B, S), L+2 ones per image
        word_embedding = self.transformer.word_embeddings(input_ids).clone()  # (B, S, hidden)
        batch = len(image_emb)
        framed = torch.cat([self.boi.repeat(batch, 1, 1), image_emb, self.eoi.repeat(batch, 1, 1)], dim=1)
        word_embedding[image_embed_mask] = framed.reshape(-1, image_emb.shape[-1]).to(word_embedding.dtype)
        return word_embedding.contiguous()


def _vision_range(num_layers: int, vision_layer_range: Sequence[int] | None) -> list[int]:
    if vision_layer_range is None:
        return list(range(min(NUM_VISION_LAYERS, num_layers)))
    return list(vision_layer_range)


def _linear(cls: type, in_f: int, out_f: int, name: str, module: nn.Module, dtype: torch.dtype,
            device: torch.device, skip_init: bool, **extra: Any) -> nn.Module:
    """A bias-free SAT model-parallel linear layer, as every CogVLM expert weight is."""
    return cls(in_f, out_f, bias=False, init_method=_INIT, params_dtype=dtype, module=module,
               name=name, skip_init=skip_init, device=device, **extra)


class LlamaVisionExpertFCMixin(BaseMixin):
    """Mixin ``mlp``: LLaMA's gated FFN, with a second set of weights for image tokens.

    Serves ``mlp_forward``. Tokens where ``vision_expert_mask`` is 1 (boi and the image
    tokens) go through ``vision_*`` weights of this mixin; all other tokens through the
    language weights, which live partly in the transformer layer (``dense_h_to_4h``,
    ``dense_4h_to_h``) and partly here (``gate_proj``, as in SAT's ``LLaMAMlpMixin``).
    """

    def __init__(self, in_features: int, hidden_features: int, num_layers: int = 32,
                 vision_layer_range: Sequence[int] | None = None, params_dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", skip_init: bool = False) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.vision_layer_range = _vision_range(num_layers, vision_layer_range)
        common: dict[str, Any] = dict(module=self, dtype=params_dtype, device=torch.device(device),
                                      skip_init=skip_init)
        col, row = ColumnParallelLinear, RowParallelLinear
        self.gate_proj = nn.ModuleList([
            _linear(col, in_features, hidden_features, "dense_h_to_4h_gate", gather_output=False, **common)
            for _ in range(num_layers)])
        keys = [str(i) for i in self.vision_layer_range]
        self.vision_dense_h_to_4h_list = nn.ModuleDict({k: _linear(
            col, in_features, hidden_features, "vision_dense_h_to_4h", gather_output=False, **common) for k in keys})
        self.vision_dense_4h_to_h_list = nn.ModuleDict({k: _linear(
            row, hidden_features, in_features, "vision_dense_4h_to_h", input_is_parallel=True, **common) for k in keys})
        self.vision_gate_proj = nn.ModuleDict({k: _linear(
            col, in_features, hidden_features, "vision_gate_proj", gather_output=False, **common) for k in keys})

    def mlp_forward(self, hidden_states: torch.Tensor, **kw_args: Any) -> torch.Tensor:
        layer_id = int(kw_args["layer_id"])
        mlp = self.transformer.layers[layer_id].mlp  # the language weights live here
        expert = kw_args.get("vision_expert_mask")

        def language(x: torch.Tensor) -> torch.Tensor:
            return mlp.dense_4h_to_h(mlp.activation_func(self.gate_proj[layer_id](x)) * mlp.dense_h_to_4h(x))

        if layer_id not in self.vision_layer_range or expert is None or not expert.any():
            return language(hidden_states).contiguous()  # (B, S, hidden)

        key = str(layer_id)
        vision_mask = expert.bool()  # (B, S)
        output = torch.empty_like(hidden_states)
        output[~vision_mask] = language(hidden_states[~vision_mask])  # (n_text, hidden)
        vision_x = hidden_states[vision_mask]  # (n_vision, hidden)
        vision_inner = self.vision_dense_h_to_4h_list[key](vision_x)
        vision_inner = vision_inner * mlp.activation_func(self.vision_gate_proj[key](vision_x))
        output[vision_mask] = self.vision_dense_4h_to_h_list[key](vision_inner)
        return output.contiguous()


class LlamaVisionExpertAttnMixin(BaseMixin):
    """Mixin ``rotary``: rotary self-attention with separate QKV and output weights for image tokens.

    Serves ``attention_forward``. Rotary positions come from ``position_ids``, in which all
    image tokens share one id; the attention itself is whatever ``attention_fn`` hook is
    installed (SAT's default unless a mixin replaces it).
    """

    def __init__(self, hidden_size: int, num_heads: int, num_layers: int = 32,
                 vision_layer_range: Sequence[int] | None = None, params_dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", skip_init: bool = False) -> None:
        super().__init__()
        world_size = mpu.get_model_parallel_world_size()
        self.hidden_size = hidden_size
        self.num_attention_heads = num_heads
        self.hidden_size_per_attention_head = divide(hidden_size, num_heads)
        self.num_attention_heads_per_partition = divide(num_heads, world_size)
        self.inner_hidden_size = num_heads * self.hidden_size_per_attention_head
        self.rotary_emb = AnyDeviceRotaryEmbedding(hidden_size // num_heads, pos_idx_in_fp32=False)
        self.num_layers = num_layers
        self.vision_layer_range = _vision_range(num_layers, vision_layer_range)
        common: dict[str, Any] = dict(module=self, dtype=params_dtype, device=torch.device(device),
                                      skip_init=skip_init)
        keys = [str(i) for i in self.vision_layer_range]
        self.vision_query_key_value_list = nn.ModuleDict({k: _linear(
            ColumnParallelLinear, hidden_size, 3 * hidden_size, "vision_query_key_value",
            stride=3, gather_output=False, **common) for k in keys})
        self.vision_dense_list = nn.ModuleDict({k: _linear(
            RowParallelLinear, self.inner_hidden_size, hidden_size, "vision_dense",
            input_is_parallel=True, final_bias=False, **common) for k in keys})

    def attention_forward(self, hidden_states: torch.Tensor, mask: torch.Tensor, **kw_args: Any) -> torch.Tensor:
        layer_id = int(kw_args["layer_id"])
        attn = self.transformer.layers[layer_id].attention  # the language weights live here
        attention_fn = attn.hooks.get("attention_fn", attention_fn_default)
        expert = kw_args.get("vision_expert_mask")
        use_expert = layer_id in self.vision_layer_range and expert is not None and bool(expert.any())
        key = str(layer_id)

        if use_expert:
            assert expert is not None  # for mypy: use_expert implies a mask
            vision_mask = expert.bool()  # (B, S)
            shape = hidden_states.shape[:-1] + (hidden_states.shape[-1] * 3 // mpu.get_model_parallel_world_size(),)
            mixed = torch.empty(shape, dtype=hidden_states.dtype, device=hidden_states.device)  # (B, S, 3h)
            mixed[~vision_mask] = attn.query_key_value(hidden_states[~vision_mask])
            mixed[vision_mask] = self.vision_query_key_value_list[key](hidden_states[vision_mask])
        else:
            mixed = attn.query_key_value(hidden_states)  # (B, S, 3h)

        q, k, v = split_tensor_along_last_dim(mixed, 3)
        q = attn._transpose_for_scores(q)  # (B, nh, S, hd)
        k = attn._transpose_for_scores(k)
        v = attn._transpose_for_scores(v)
        position_ids = kw_args["position_ids"]  # (B, S)
        q, k = self.rotary_emb(q, k, position_ids, max_seqlen=position_ids.max() + 1, layer_id=layer_id)

        dropout_fn = attn.attention_dropout if attn.training else None
        context = attention_fn(q, k, v, mask, dropout_fn, **kw_args)  # (B, nh, S, hd)
        context = context.permute(0, 2, 1, 3).contiguous()  # (B, S, nh, hd)
        context = context.view(*context.size()[:-2], attn.hidden_size_per_partition)  # (B, S, h)

        if use_expert:
            target = context.shape[:-1] + (context.shape[-1] * mpu.get_model_parallel_world_size(),)
            output = torch.empty(target, dtype=hidden_states.dtype, device=hidden_states.device)
            output[~vision_mask] = attn.dense(context[~vision_mask])
            output[vision_mask] = self.vision_dense_list[key](context[vision_mask])
        else:
            output = attn.dense(context)
        if attn.training:
            output = attn.output_dropout(output)
        return output.contiguous()

