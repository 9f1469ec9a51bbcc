"""Memory per rank of a config at model_parallel_size 1/2/4/8, from a meta build (no memory used).

"Will CogVLM fit on two 24 GB cards?" A rank holds its share of every SAT parallel layer and
a full copy of everything else (:mod:`.layout`). We build the model once on the ``meta``
device at mp=1 (about a second at 17.6B) and, for each size N, count per parallel layer the
slice SAT's ``partition()`` would give (split dimension / N) plus the replicated rest:

* weights per rank in fp32 / bf16 / fp16 bytes;
* the KV cache per token per rank: SAT's ``CachedAutoregressiveMixin`` keeps keys and values
  of every layer, ``2 * num_layers * hidden_size / N`` numbers per token (the heads are split);
  a CogVLM prompt holds ``image_length + 2`` image slots before any text.

Activations and framework overhead are not counted (they depend on batch and kernels); the
numbers are a floor, stated as such in every view.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DTYPE_BYTES", "SIZES", "memory_table"]

SIZES = (1, 2, 4, 8)
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _counts(model: Any) -> tuple[list[tuple[int, int, str]], int]:
    """([(numel, split_dim_size, class)] of parallel layers' parameters, replicated numel)."""
    from .cpu_split import PARALLEL_LAYERS

    split: list[tuple[int, int, str]] = []
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, PARALLEL_LAYERS):
            kind = type(module).__name__
            for name, param in module.named_parameters(recurse=False):
                dim = 1 if kind == "RowParallelLinear" and name == "weight" else 0
                if kind == "RowParallelLinear" and name == "bias":
                    continue  # a row-parallel bias is added after the reduce: replicated
                split.append((param.numel(), int(param.shape[dim]), kind))
                seen.add(id(param))
    replicated = sum(p.numel() for p in model.parameters() if id(p) not in seen)
    return split, replicated


def memory_table(spec: str | Path, sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """Per-rank parameter counts and bytes of ``spec`` at each model-parallel size."""
    from ..cogvlm.build import build_model
    from ..cogvlm.checkpoint import _untraced
    from .checks import ParallelError, check_world_size

    with _untraced():
        result = build_model(str(spec), device="meta")
    values = result.config.values
    split, replicated = _counts(result.model)
    total = replicated + sum(n for n, _, _ in split)
    layers, hidden = int(values["num_layers"]), int(values["hidden_size"])
    image_slots = int(values.get("image_length", 0)) + 2
    rows = []
    for size in sizes:
        try:
            check_world_size(values, size)
            refused = None
        except ParallelError as e:
            refused = str(e)
        per_rank = replicated + sum(n // size for n, _, _ in split)
        kv_per_token = 2 * layers * hidden // size
        rows.append({
            "model_parallel_size": size, "parameters_per_rank": per_rank, "refused": refused,
            "weights_bytes": {dtype: per_rank * b for dtype, b in DTYPE_BYTES.items()},
            "kv_cache_bytes_per_token": {dtype: kv_per_token * b for dtype, b in DTYPE_BYTES.items()},
            "image_prompt_kv_bytes": {dtype: kv_per_token * b * image_slots for dtype, b in DTYPE_BYTES.items()},
        })
    return {"config": str(spec), "name": result.config.name, "parameters": total, "replicated": replicated,
            "num_layers": layers, "hidden_size": hidden, "image_slots": image_slots, "rows": rows}
