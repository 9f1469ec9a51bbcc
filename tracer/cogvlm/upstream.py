"""Run upstream CogVLM's own SAT code (a user's checkout of THUDM/CogVLM) on a CPU.

Upstream's model code needs a GPU twice over:

* the language model rotates queries and keys with SAT's Triton ``FastRotaryEmbedding``,
  which crashes off CUDA — :func:`tracer.rotary.patch_fast_rotary` fixes that;
* the vision tower (``utils/models/eva_clip_model.py``) does ``import xformers.ops as xops``
  at import time and computes its attention with ``xops.memory_efficient_attention``.
  xformers ships CUDA kernels and no CPU build, so on a laptop the import already fails.

:func:`upstream_on_cpu` does both for the duration of a block: the rotary patch, and — only
when xformers is not installed — a stand-in ``xformers.ops`` module whose
:func:`memory_efficient_attention` is the same computation in plain torch. Import upstream's
modules inside the block::

    import sys
    sys.path.insert(0, "/path/to/CogVLM")          # the folder that holds utils/
    from tracer.cogvlm.upstream import upstream_on_cpu

    with upstream_on_cpu():
        from utils.models.cogvlm_model import CogVLMModel
        model = get_model(args, CogVLMModel)
        logits = model(**inputs)[0]

On exit the rotary forward is SAT's again and the stand-in leaves ``sys.modules`` (a module
that imported it keeps its reference: upstream's vision tower still runs after the block).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ..rotary import patch_fast_rotary

__all__ = ["memory_efficient_attention", "upstream_on_cpu", "xformers_stand_in"]


def memory_efficient_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attn_bias: Any = None, p: float = 0.0, scale: float | None = None,
                               **unsupported: Any) -> torch.Tensor:
    """``xformers.ops.memory_efficient_attention`` in plain torch.

    Same layout as xformers: query (B, M, H, K), key (B, N, H, K), value (B, N, H, Kv) ->
    (B, M, H, Kv); ``softmax(q @ k^T * scale + attn_bias) @ v`` with ``scale`` defaulting to
    ``K ** -0.5``. ``attn_bias`` may be None or an additive tensor broadcastable to
    (B, H, M, N); xformers' structured bias classes (``LowerTriangularMask`` …) are not
    reproduced and raise.
    """
    if unsupported:
        raise TypeError(f"memory_efficient_attention stand-in: unsupported arguments {sorted(unsupported)}")
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(f"expected 4-d (batch, seq, heads, head_dim) tensors, got shapes "
                         f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if attn_bias is not None and not isinstance(attn_bias, torch.Tensor):
        raise NotImplementedError(f"attn_bias of type {type(attn_bias).__name__}: the CPU stand-in for "
                                  "xformers takes None or an additive tensor")
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # (B, H, seq, dim)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=p, scale=scale)
    return out.transpose(1, 2)


def _stand_in_modules() -> dict[str, types.ModuleType]:
    package = types.ModuleType("xformers")
    package.__doc__ = "cogvlm-tracer's CPU stand-in for xformers (tracer.cogvlm.upstream)"
    package.__path__ = []  # a package, so `import xformers.ops` resolves through sys.modules
    ops = types.ModuleType("xformers.ops")
    ops.__doc__ = package.__doc__
    ops.memory_efficient_attention = memory_efficient_attention  # type: ignore[attr-defined]
    package.ops = ops  # type: ignore[attr-defined]
    return {"xformers": package, "xformers.ops": ops}


@contextlib.contextmanager
def xformers_stand_in() -> Iterator[bool]:
    """Make ``import xformers.ops`` work inside the block when xformers is not installed.

    Yields True if the stand-in was installed, False if a real xformers is there (then
    nothing is touched). Only the entries this block added are removed on exit.
    """
    if "xformers" in sys.modules or importlib.util.find_spec("xformers") is not None:
        yield False
        return
    added = _stand_in_modules()
    sys.modules.update(added)
    try:
        yield True
    finally:
        for name, module in added.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


@contextlib.contextmanager
def upstream_on_cpu() -> Iterator[None]:
    """Everything upstream CogVLM's SAT code needs to build and run on a CPU (see the module doc)."""
    with patch_fast_rotary(), xformers_stand_in():
        yield
