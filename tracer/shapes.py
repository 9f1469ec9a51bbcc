"""Full-width shapes without the memory: a SAT model's forward on meta weights, with real masks.

The article's variant (4096 wide LM, 1792 wide EVA with 63 layers, 1225 image tokens) holds
5.5 billion weights — 22 GB in fp32. On the ``meta`` device a tensor has a shape and a dtype
but no storage, and every torch operator computes its output shape from the same shape
functions the real kernels use, so a meta forward gives the real model's shapes for free.

What stops a plain meta forward is code that needs *values*: CogVLM asks
``vision_expert_mask.any()``, indexes ``hidden_states[vision_mask]`` (the output length
is the number of ones), takes ``position_ids.max() + 1``, and SAT's attention asks whether
the mask is lower-triangular. All of those values live in small integer inputs (masks,
position ids, the attention mask), never in activations. :class:`MetaWithValues` therefore
keeps those inputs as real CPU tensors and everything derived from the weights on meta:

* an operator mixing meta and CPU tensors gets its CPU tensors moved to meta (shape only);
* indexing a meta tensor with a CPU boolean mask uses the mask's real ``nonzero()``
  positions, so ``x[mask]`` has exactly as many rows as there are ones;
* ``cpu_tensor.type_as(meta_tensor)`` changes the dtype and stays on the CPU (SAT casts the
  attention mask this way and then inspects its values).

Nothing here knows CogVLM: any SAT model whose data-dependent decisions read its inputs (not
its activations) runs the same way. The result: every recorded shape is one the real model
produces on the same input; activations and weights are reported with device ``meta``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

__all__ = ["MetaWithValues", "ShapeRun", "record_shapes"]

_INDEXING = (torch.Tensor.__getitem__, torch.Tensor.__setitem__)


def _is_meta(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "meta"


def _has_meta(values: Iterable[Any]) -> bool:
    """Any meta tensor among ``values`` or one level inside a list/tuple (``torch.cat``'s
    argument); cheaper than flattening every call's arguments with pytree."""
    for value in values:
        if isinstance(value, torch.Tensor):
            if value.device.type == "meta":
                return True
        elif isinstance(value, (list, tuple)) and any(_is_meta(v) for v in value):
            return True
    return False


def _to_meta(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.device.type != "meta":
        return x.to("meta")
    return x


def _index_to_meta(index: Any) -> Any:
    """Turn CPU boolean masks in an index into their real positions, on meta."""
    if isinstance(index, torch.Tensor) and index.device.type != "meta":
        if index.dtype == torch.bool:
            return tuple(i.to("meta") for i in index.nonzero(as_tuple=True))
        return index.to("meta")
    if isinstance(index, tuple):
        out: list[Any] = []
        for part in index:
            converted = _index_to_meta(part)
            if isinstance(part, torch.Tensor) and part.dtype == torch.bool and isinstance(converted, tuple):
                out.extend(converted)
            else:
                out.append(converted)
        return tuple(out)
    return index


class MetaWithValues(TorchFunctionMode):
    """Run a model with meta weights on inputs whose small integer tensors stay real (CPU).

    Example::

        with MetaWithValues(), torch.no_grad():
            logits = meta_model(**inputs)[0]     # meta tensor of the real shape
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not _has_meta(args) and not _has_meta(kwargs.values()):
            return func(*args, **kwargs)
        if func is torch.Tensor.type_as and args and not _is_meta(args[0]):
            return args[0].to(dtype=args[1].dtype)
        if func in _INDEXING and args and _is_meta(args[0]):
            rest = list(args[2:])
            if func is torch.Tensor.__setitem__ and rest:
                rest[0] = _to_meta(rest[0])
            return func(args[0], _index_to_meta(args[1]), *rest)
        args, kwargs = tree_map(_to_meta, (args, kwargs))
        return func(*args, **kwargs)


@dataclass
class ShapeRun:
    """What :func:`record_shapes` did: the trace handle, timings and peak memory."""

    handle: Any
    seconds: float
    peak_rss_mb: float
    logits_shape: tuple[int, ...]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def record_shapes(config: str | Path, *, out_dir: str | Path | None = None, text_tokens: int = 16,
                  num_layers: int | None = None, categories: Iterator[str] | None = None,
                  max_depth: int | None = None) -> ShapeRun:
    """Build ``config`` on meta and trace one context forward at its real widths; the model's
    adapter (chosen by the config's ``model_class``) builds it and makes the forward's inputs."""
    from .adapters import adapter_for_config
    from .schema import DEFAULT_CATEGORIES
    from .session import trace

    adapter = adapter_for_config(config)
    spec = adapter.load_config(config)
    start = time.perf_counter()
    meta = {"command": "shapes", "config": str(spec.path), "text_tokens": text_tokens,
            "execution": "meta weights and activations; token ids, masks and position ids real on CPU "
                         "(tracer.shapes.MetaWithValues): shapes are the real model's, values are not computed"}
    if num_layers is not None:
        meta["num_layers"] = num_layers
    with trace(out_dir, categories=tuple(categories) if categories is not None else DEFAULT_CATEGORIES,
               max_depth=max_depth, meta=meta, chrome=True) as handle:
        result = adapter.build(spec, device="meta", num_layers=num_layers)
        inputs = adapter.forward_inputs(result.args, text_tokens=text_tokens)
        with MetaWithValues(), torch.no_grad():
            logits = result.model(**inputs)[0]
    return ShapeRun(handle=handle, seconds=time.perf_counter() - start, peak_rss_mb=_peak_rss_mb(),
                    logits_shape=tuple(logits.shape))
