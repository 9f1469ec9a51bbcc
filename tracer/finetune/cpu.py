"""CPU substitutions for the parts of SAT's training path that hard-code CUDA.

SAT's ``training_main`` is written for GPUs. Running it on a CPU (fp32, gloo) needs four
changes, each made only for the duration of :func:`cpu_training` and undone on exit (also on an
exception), like the rotary substitution (:mod:`tracer.rotary`):

==================================================  =============================================
SAT code (0.4.12)                                   CPU substitution
==================================================  =============================================
``sat.arguments.get_args``: outside inference mode  :func:`get_training_args`: while SAT parses,
it sets ``args.device = 'cpu'`` itself, then        ``torch.cuda.device_count()`` answers 1 and
raises "LOCAL_RANK (default 0) and args.device      ``torch.cuda.set_device`` does nothing, so the
inconsistent"                                       check sees device == LOCAL_RANK; afterwards
                                                    ``args.device = 'cpu'``
``sat.training.utils.Timers``: ``start``/``stop``   timers that read the wall clock without the
call ``torch.cuda.synchronize()``                   synchronize (a CPU computes synchronously)
``sat.training.utils.report_memory``: CUDA memory   the process's peak resident memory
counters
``sat.mpu.broadcast_data``: ``.cuda()`` and         :func:`broadcast_data`: the same broadcast of
``torch.cuda.current_device()``                     the packed batch within the model-parallel
                                                    group, on CPU tensors (gloo)
==================================================  =============================================

Two more GPU assumptions are avoided by arguments rather than code: ``--no-save-rng`` (saving
the RNG state calls ``torch.cuda.get_rng_state()``) and the shipped DeepSpeed config, which
uses ZeRO stage 1 in fp32 with torch's AdamW (``"torch_adam": true``: DeepSpeed's own Adam is a
CUDA kernel, or a CPU extension it would compile for minutes). ZeRO stage 0 cannot be used: in
fp32 DeepSpeed then returns the bare optimizer, and SAT's ``save_checkpoint`` reads
``optimizer.optimizer``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["CpuTimers", "broadcast_data", "cpu_training", "get_training_args", "report_memory"]


def _sat_timers() -> type:
    from sat.training.utils import Timers

    return Timers


class CpuTimers(_sat_timers()):  # type: ignore[misc]
    """SAT's ``Timers`` without ``torch.cuda.synchronize()`` (same names, logs and arithmetic)."""

    class Timer(_sat_timers().Timer):  # type: ignore[misc]
        def start(self) -> None:
            assert not self.started_, "timer has already been started"  # type: ignore[has-type]
            self.start_time = time.time()
            self.started_ = True

        def stop(self) -> None:
            assert self.started_, "timer is not started"
            self.elapsed_ += time.time() - self.start_time
            self.started_ = False


def report_memory(name: str) -> bool:
    """SAT's memory report line, with the process's peak RSS instead of CUDA's counters."""
    from sat.helpers import print_rank0

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
    print_rank0(f"{name} memory (MB) | peak resident (CPU): {peak_mb:.1f}")
    return True


def broadcast_data(keys: list[str], data: dict[str, torch.Tensor] | None, datatype: torch.dtype
                   ) -> dict[str, torch.Tensor]:
    """``sat.mpu.broadcast_data`` on CPU tensors: rank 0 of each model-parallel group sends the
    tensors of ``keys`` (all of ``datatype``), the other members receive them."""
    from sat import mpu

    group, src = mpu.get_model_parallel_group(), mpu.get_model_parallel_src_rank()
    first = mpu.get_model_parallel_rank() == 0
    max_dim = 8  # SAT's _MAX_DATA_DIM
    sizes = torch.zeros(len(keys) * max_dim, dtype=torch.long)
    if first:
        assert data is not None
        for i, key in enumerate(keys):
            if data[key].dtype != datatype:
                raise TypeError(f"{key} has data type {data[key].dtype}, expected {datatype}")
            dims = data[key].shape
            sizes[i * max_dim: i * max_dim + len(dims)] = torch.tensor(dims)
    torch.distributed.broadcast(sizes, src, group=group)
    shapes = [[int(s) for s in sizes[i * max_dim:(i + 1) * max_dim] if s > 0] for i in range(len(keys))]
    total = sum(int(torch.tensor(shape).prod()) for shape in shapes)
    if first:
        assert data is not None
        flat = torch.cat([data[key].contiguous().view(-1) for key in keys])
    else:
        flat = torch.empty(total, dtype=datatype)
    torch.distributed.broadcast(flat, src, group=group)
    out, offset = {}, 0
    for key, shape in zip(keys, shapes, strict=True):
        numel = int(torch.tensor(shape).prod())
        out[key] = flat.narrow(0, offset, numel).view(shape)
        offset += numel
    return out


@contextlib.contextmanager
def _attributes(*changes: tuple[Any, str, Any]) -> Iterator[None]:
    """Set ``obj.name = value`` for each change; restore every original on exit."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in changes]
    try:
        for obj, name, value in changes:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def get_training_args(args_list: list[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """``sat.get_args(args_list)`` for a CPU training run (see the module doc); initialises
    torch.distributed (gloo) and DeepSpeed's communication like SAT does on a GPU."""
    from sat import get_args

    if torch.cuda.is_available():
        return get_args(args_list, parser)
    with _attributes((torch.cuda, "device_count", lambda: 1), (torch.cuda, "set_device", lambda device: None)):
        args = get_args(args_list, parser)
    args.device = "cpu"
    return args


@contextlib.contextmanager
def cpu_training() -> Iterator[None]:
    """SAT's training loop on a CPU: the substitutions of the module doc, undone on exit."""
    import sat.mpu
    import sat.mpu.data
    import sat.training.deepspeed_training as training

    if torch.cuda.is_available():
        yield
        return
    with _attributes((training, "Timers", CpuTimers), (training, "report_memory", report_memory),
                     (sat.mpu, "broadcast_data", broadcast_data), (sat.mpu.data, "broadcast_data", broadcast_data)):
        yield
