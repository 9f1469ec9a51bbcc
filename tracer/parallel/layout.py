"""Which rank holds which slice of each weight: read from a live model's SAT parallel layers.

SAT slices three layer classes (``sat/mpu/layers.py``):

* ``ColumnParallelLinear`` — output rows (dim 0). With ``stride`` s (CogVLM's fused QKV has
  s=3) the weight is s blocks (q, k, v) and each rank holds its share *of every block*;
* ``RowParallelLinear`` — input columns (dim 1), one contiguous share;
* ``VocabParallelEmbedding`` — vocabulary rows ``[vocab_start_index, vocab_end_index)``.

Every other parameter (layer norms, EVA's plain linears, a vocabulary under 1,000) is
replicated: each rank holds all of it. :func:`parallel_layout` lists both, as plain JSON for
the trace's meta (``meta["parallel_layout"]``), so views need neither torch nor the model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["parallel_layout"]


def _held(kind: str, module: Any, full: int, rank: int, world_size: int) -> list[list[int]]:
    """[start, end) ranges of the split dimension this rank holds."""
    if kind == "VocabParallelEmbedding":
        return [[int(module.vocab_start_index), int(module.vocab_end_index)]]
    share = full // world_size
    if kind == "RowParallelLinear":
        return [[rank * share, (rank + 1) * share]]
    stride = module.stride
    strides = [1] * stride if isinstance(stride, int) else list(stride)
    unit = full // sum(strides)
    ranges, start = [], 0
    for s in strides:
        block = unit * s
        piece = block // world_size
        ranges.append([start + rank * piece, start + (rank + 1) * piece])
        start += block
    return ranges


def parallel_layout(model: nn.Module, rank: int, world_size: int) -> dict[str, Any]:
    """``{"layers": [...], "replicated": {...}}`` for this rank's model (see the module docstring)."""
    from .cpu_split import PARALLEL_LAYERS

    layers: list[dict[str, Any]] = []
    replicated_params = 0
    replicated_bytes = 0
    seen: set[int] = set()
    for path, child in model.named_modules():
        if isinstance(child, PARALLEL_LAYERS):
            module: Any = child  # SAT's parallel layers: weight, bias, stride, vocab range
            kind = type(module).__name__
            weight = module.weight
            dim = 1 if kind == "RowParallelLinear" else 0
            local = [int(s) for s in weight.shape]
            full = list(local)
            full[dim] = local[dim] * world_size
            bias = getattr(module, "bias", None)
            layers.append({
                "path": path, "class": kind, "split_dim": dim, "full_shape": full, "local_shape": local,
                "stride": module.stride if kind == "ColumnParallelLinear" else 1,
                "held": _held(kind, module, full[dim], rank, world_size),
                "dtype": str(weight.dtype).removeprefix("torch."),
                "bytes": weight.numel() * weight.element_size()
                + (bias.numel() * bias.element_size() if bias is not None else 0),
            })
            seen.update(id(p) for p in module.parameters())
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            replicated_params += param.numel()
            replicated_bytes += param.numel() * param.element_size()
    return {"rank": rank, "world_size": world_size, "layers": layers,
            "replicated": {"parameters": replicated_params, "bytes": replicated_bytes}}
