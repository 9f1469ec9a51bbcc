"""Run upstream CogAgent's own SAT code (a checkout of THUDM/CogVLM) on a CPU.

On top of what upstream CogVLM needs (:func:`tracer.cogvlm.upstream.upstream_on_cpu`: CPU
rotary, an xformers stand-in), CogAgent's high-resolution encoder
(``utils/models/eva_clip_L_hf.py``) imports three helpers from timm at import time:
``drop_path``, ``to_2tuple`` and ``trunc_normal_``. timm requires torchvision, which has no
build beside the CPU torch used here, so when timm is absent :func:`timm_stand_in` provides
those three in plain torch (``trunc_normal_`` *is* ``torch.nn.init.trunc_normal_``; ``drop_path``
is the identity outside training, as timm's). It also notes upstream's ``apex`` fallback:
without apex, upstream uses its own ``LayerNorm`` subclass, numerically ``nn.LayerNorm``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch

from ..cogvlm.upstream import upstream_on_cpu

__all__ = ["agent_upstream_on_cpu", "drop_path", "timm_stand_in", "to_2tuple"]


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth per sample: identity when not training or ``drop_prob`` is 0."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def to_2tuple(x: Any) -> tuple[Any, ...]:
    """``(x, x)``, or ``tuple(x)`` for an iterable (timm's ``to_2tuple``)."""
    if isinstance(x, (list, tuple)):
        return tuple(x)
    return (x, x)


def _stand_in_modules() -> dict[str, types.ModuleType]:
    doc = "cogvlm-tracer's CPU stand-in for the three timm helpers CogAgent imports (tracer.cogagent.upstream)"
    modules = {name: types.ModuleType(name) for name in ("timm", "timm.models", "timm.models.layers", "timm.layers")}
    for module in modules.values():
        module.__doc__ = doc
        module.__path__ = []  # packages, so dotted imports resolve through sys.modules
    for name in ("timm.models.layers", "timm.layers"):
        modules[name].drop_path = drop_path  # type: ignore[attr-defined]
        modules[name].to_2tuple = to_2tuple  # type: ignore[attr-defined]
        modules[name].trunc_normal_ = torch.nn.init.trunc_normal_  # type: ignore[attr-defined]
    modules["timm"].models = modules["timm.models"]  # type: ignore[attr-defined]
    modules["timm"].layers = modules["timm.layers"]  # type: ignore[attr-defined]
    modules["timm.models"].layers = modules["timm.models.layers"]  # type: ignore[attr-defined]
    return modules


@contextlib.contextmanager
def timm_stand_in() -> Iterator[bool]:
    """Make ``from timm.models.layers import drop_path, to_2tuple, trunc_normal_`` work inside the
    block when timm is not installed; yields whether the stand-in was installed."""
    if "timm" in sys.modules or importlib.util.find_spec("timm") is not None:
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
def agent_upstream_on_cpu() -> Iterator[None]:
    """Everything upstream CogAgent's code needs to build and run on a CPU."""
    with upstream_on_cpu(), timm_stand_in():
        yield
