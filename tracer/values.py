"""Turn live Python values (tensors, Namespaces, models) into short, stable JSON facts.

A trace must be identical for identical input apart from timings and ids, so summaries
never contain memory addresses or object ids; and it must be cheap, so a tensor becomes its
shape, dtype and device only — the values are never read (reading would also fail on the
meta device and cost a device sync on CUDA).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

import torch

from .schema import shape_text

__all__ = [
    "count_parameters",
    "describe_model",
    "module_paths",
    "namespace_diff",
    "short",
    "tensor_info",
    "tensor_infos",
]

MAX_SHORT = 160
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DTYPES: dict[torch.dtype, str] = {}


def _dtype(dtype: torch.dtype) -> str:
    name = _DTYPES.get(dtype)
    if name is None:
        name = _DTYPES[dtype] = str(dtype).removeprefix("torch.")
    return name


def tensor_info(t: torch.Tensor) -> dict[str, Any]:
    """The JSON form of :class:`tracer.schema.TensorInfo` (built directly: this runs per call)."""
    device = "cpu" if t.is_cpu else ("meta" if t.is_meta else t.device.type)  # is_cpu: no device object
    return {"shape": list(t.shape), "dtype": _dtype(t.dtype), "device": device}


def tensor_infos(values: Any) -> list[dict[str, Any] | None]:
    """One entry per positional value (or per element of a returned tuple/list): its
    TensorInfo JSON, or None for anything that is not a tensor."""
    if isinstance(values, torch.Tensor):
        return [tensor_info(values)]
    if isinstance(values, (tuple, list)):
        return [tensor_info(v) if isinstance(v, torch.Tensor) else None for v in values]
    return [None]


def _clip(text: str, limit: int = MAX_SHORT) -> str:
    text = _ADDRESS.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def count_parameters(module: torch.nn.Module, seen_params: set[int] | None = None) -> int:
    """``sum(p.numel() for p in module.parameters())``, faster (construction events count a
    model's parameters before and after every add_mixin). Shared modules and parameters count
    once, as in ``parameters()``; a module whose ``__init__`` has not run yet counts 0.

    ``seen_params`` (ids) is filled with the parameters counted; parameters already in it are
    skipped — so ``count_parameters(mixin, seen)`` after counting a model gives what adding
    the mixin adds."""
    if seen_params is None:
        seen_params = set()
    seen_modules = {id(module)}
    total = 0
    stack = [module]
    while stack:
        state = stack.pop().__dict__
        params = state.get("_parameters")
        if params is None:
            continue
        for p in params.values():
            if p is not None and id(p) not in seen_params:
                seen_params.add(id(p))
                total += p.numel()
        for child in state["_modules"].values():
            if child is not None and id(child) not in seen_modules:
                seen_modules.add(id(child))
                stack.append(child)
    return total


def module_paths(root: torch.nn.Module) -> dict[int, str]:
    """{id(module): dotted path} for ``root`` and everything below it, first path wins.

    The same map as ``named_modules()`` gives, walked with a list instead of nested
    generators: construction events resolve paths several times while a model is built."""
    paths = {id(root): ""}
    stack: list[tuple[str, torch.nn.Module]] = [("", root)]
    while stack:
        prefix, module = stack.pop()
        children = module.__dict__.get("_modules")
        if not children:
            continue
        for name, child in reversed(children.items()):
            if child is not None and id(child) not in paths:
                path = f"{prefix}.{name}" if prefix else name
                paths[id(child)] = path
                stack.append((path, child))
    return paths


def describe_model(module: torch.nn.Module, count: int | None = None) -> str:
    """'CogVLMModel(644,000 params, cpu, float32)' — no repr of the whole module tree."""
    first = next(module.parameters(), None) if "_parameters" in module.__dict__ else None
    where = "" if first is None else f", {first.device.type}, {_dtype(first.dtype)}"
    total = count_parameters(module) if count is None else count
    return f"{type(module).__name__}({total:,} params{where})"


def short(value: Any, limit: int = MAX_SHORT) -> str:
    """A one-line summary of any argument or return value, stable across runs."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return _clip(repr(value), limit)
    if isinstance(value, torch.Tensor):
        return f"Tensor{shape_text(value.shape)} {_dtype(value.dtype)} {value.device.type}"
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, torch.device):
        return repr(str(value))
    if isinstance(value, torch.nn.Module):
        from sat.model.base_model import BaseMixin, BaseModel  # lazily: values.py stays importable alone

        if isinstance(value, BaseMixin):
            return describe_model(value)  # small: counting is cheap
        if isinstance(value, BaseModel):
            return type(value).__name__  # a whole model: its count is in the events that build it
        return type(value).__name__
    if isinstance(value, argparse.Namespace):
        return f"Namespace({len(vars(value))} keys)"
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, (tuple, list)):
        inner = ", ".join(short(v, 60) for v in value[:4])
        more = ", …" if len(value) > 4 else ""
        text = f"({inner}{more})" if isinstance(value, tuple) else f"[{inner}{more}]"
        return _clip(text, limit)
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {short(v, 40)}" for k, v in list(value.items())[:6])
        more = ", …" if len(value) > 6 else ""
        return _clip("{" + inner + more + "}", limit)
    if callable(value):
        name = getattr(value, "__qualname__", None) or type(value).__name__
        return f"<{name}>"
    return _clip(f"<{type(value).__name__}>", limit)


def namespace_diff(ns: argparse.Namespace | Mapping[str, Any],
                   reference: Mapping[str, Any] | None) -> dict[str, str]:
    """{key: short value} for the keys of ``ns`` that are absent from or differ from
    ``reference`` (all keys when there is no reference), in ``ns``'s own order."""
    items = vars(ns) if isinstance(ns, argparse.Namespace) else ns
    out: dict[str, str] = {}
    for key, value in items.items():
        if reference is not None and key in reference:
            try:
                if reference[key] == value:
                    continue
            except Exception:  # noqa: BLE001 - values that cannot be compared count as different
                pass
        out[key] = short(value, 80)
    return out
