"""Record every collective of a model-parallel run as ``collective`` events of the active trace.

Two levels, nested in the trace:

* SAT's ``mpu`` regions: ``sat.mpu.mappings._reduce`` / ``_gather`` / ``_split`` — what
  ``RowParallelLinear`` (reduce), ``ColumnParallelLinear(gather_output=True)`` and the logits
  (gather) and ``VocabParallelEmbedding`` (reduce) do; named ``mpu.reduce``, ``mpu.gather``,
  ``mpu.split``;
* the ``torch.distributed`` calls under them and everywhere else: ``all_reduce``,
  ``all_gather``, ``broadcast``, ``broadcast_object_list`` (cli_demo's input broadcast),
  ``all_gather_object``, ``gather``, ``send``, ``recv``, ``barrier``.

Both are caught by replacing the module attribute for the duration of the recording
(``PatchSet.set_attr``): SAT and torch look these names up at call time (``torch.distributed.
all_reduce(...)``, the autograd functions' module globals). Everything is put back on exit.

``data``: ``op``; ``shapes`` (TensorInfo of each tensor argument, or of the outputs for mpu
regions); ``bytes`` this rank contributes (for ``all_gather``: its own tensor; for object
calls: the pickled size, measured after the call); ``group_size``; ``peer`` (src/dst) when the
call has one; ``objects`` (short text) for object broadcasts, so a trace shows *what* rank 0 sent.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..patching import PatchSet
from ..schema import Category, SourceLocation
from ..sink import Recorder

__all__ = ["CATEGORY", "DIST_OPS", "MPU_OPS", "record_collectives"]

CATEGORY: Category = "collective"
DIST_OPS = ("all_reduce", "all_gather", "broadcast", "broadcast_object_list", "all_gather_object", "gather",
            "send", "recv", "barrier")
MPU_OPS = {"_reduce": "mpu.reduce", "_gather": "mpu.gather", "_split": "mpu.split"}
_PEER_KEYS = ("src", "dst")
MAX_OBJECT_TEXT = 120


def _info(t: torch.Tensor) -> dict[str, Any]:
    return {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "device": t.device.type}


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _group_size(group: Any) -> int | None:
    try:
        return int(torch.distributed.get_world_size(group=group))
    except (RuntimeError, ValueError):
        return None


def _describe_call(op: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Facts known before the call: the tensors handed in, peer, group size. ``func`` is the
    original (its signature names the arguments; the module attribute is our wrapper now)."""
    import inspect

    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = {}
    data: dict[str, Any] = {"op": op}
    tensors: list[torch.Tensor] = []
    own: torch.Tensor | None = None
    for value in bound.values():
        found = _tensors(value)
        tensors += found
        if own is None and isinstance(value, torch.Tensor):
            own = value
    data["shapes"] = [_info(t) for t in tensors]
    payload = [own] if own is not None else tensors
    data["bytes"] = sum(t.numel() * t.element_size() for t in payload)
    for key in _PEER_KEYS:
        if key in bound and bound[key] is not None:
            data["peer"] = int(bound[key])
    data["group_size"] = _group_size(bound.get("group"))
    return data


def _objects_text(values: list[Any]) -> str:
    text = repr(values)
    return text if len(text) <= MAX_OBJECT_TEXT else text[:MAX_OBJECT_TEXT - 1] + "…"


def _dist_wrapper(recorder: Recorder, op: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not recorder.recording():
            return original(*args, **kwargs)
        try:
            data = _describe_call(op, original, args, kwargs)
        except Exception as e:  # noqa: BLE001 - never let the summary break the call
            data = {"op": op, "trace_error": f"{type(e).__name__}: {e}"}
        token, record = recorder.begin(CATEGORY, op, data, SourceLocation.of_frame(sys._getframe(1)))
        try:
            result = original(*args, **kwargs)
        except BaseException as e:
            recorder.end(token, f"{type(e).__name__}: {e}")
            raise
        if record is not None and op in ("broadcast_object_list", "all_gather_object"):
            objects = args[0] if args else kwargs.get("object_list", [])
            with contextlib.suppress(Exception):
                record.data["objects"] = _objects_text(list(objects))
                record.data["bytes"] = len(pickle.dumps(list(objects)))
        recorder.end(token)
        return result
    return wrapper


def _mpu_wrapper(recorder: Recorder, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(input_: torch.Tensor) -> torch.Tensor:
        if not recorder.recording():
            return original(input_)
        data: dict[str, Any] = {"op": name, "inputs": [_info(input_)],
                                "bytes": input_.numel() * input_.element_size()}
        token, record = recorder.begin(CATEGORY, name, data, SourceLocation.of_frame(sys._getframe(1)))
        try:
            output = original(input_)
        except BaseException as e:
            recorder.end(token, f"{type(e).__name__}: {e}")
            raise
        if record is not None:
            record.data["outputs"] = [_info(output)]
        recorder.end(token)
        return output
    return wrapper


@contextlib.contextmanager
def record_collectives(recorder: Recorder) -> Iterator[None]:
    """Record collectives into ``recorder`` inside the block (adds the ``collective`` category)."""
    import sat.mpu.mappings as mappings

    patches = PatchSet()
    previous = recorder.categories
    recorder.categories = recorder.categories | {CATEGORY}
    try:
        for op in DIST_OPS:
            patches.set_attr(torch.distributed, op, _dist_wrapper(recorder, op, getattr(torch.distributed, op)))
        for attr, name in MPU_OPS.items():
            patches.set_attr(mappings, attr, _mpu_wrapper(recorder, name, getattr(mappings, attr)))
        yield
    finally:
        patches.undo()
        recorder.categories = previous
