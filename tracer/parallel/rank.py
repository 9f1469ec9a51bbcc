"""What one rank of a ``torchrun`` job does: join SAT's process group, trace, broadcast inputs.

* :func:`init_distributed` — SAT's own model-only initialisation (``sat.arguments._simple_init``,
  the function ``BaseModel.__init__`` calls): ``torch.distributed`` with gloo when there is no
  CUDA, and SAT's ``mpu`` groups at model_parallel_size = world size. Called before tracing
  starts, so every rank can meet at one barrier that aligns the per-rank traces.
* :func:`traced_rank` — this rank's recording: ``<out>/rank<r>/trace.json`` with ``rank``,
  ``world_size`` and ``model_parallel_size`` in its meta, construction/module/hook/generation
  events plus every collective (:mod:`.collectives`), opened by the alignment barrier.
* :func:`broadcast_input` — upstream ``cli_demo_sat.py``: rank 0 reads a value (argument or
  ``input()``), ``torch.distributed.broadcast_object_list`` hands it to every other rank.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..cogvlm.build import DEFAULT_SEED
from ..schema import DEFAULT_MAX_STEPS
from ..session import TraceHandle, trace
from .collectives import record_collectives

__all__ = ["ALIGN_MARK", "broadcast_input", "init_distributed", "rank_dir", "sample_logits", "traced_rank"]

# data["align"] on the barrier that opens every rank's trace: the merge lines the lanes up at its end.
ALIGN_MARK = "align"


def rank_dir(out: str | Path, rank: int) -> Path:
    return Path(out) / f"rank{rank}"


def init_distributed(seed: int = DEFAULT_SEED) -> tuple[int, int]:
    """Join the job's process group the way SAT does for a model-only run; (rank, world size)."""
    from sat.arguments import _simple_init

    size = int(os.environ.get("WORLD_SIZE", 1))
    _simple_init(model_parallel_size=size, seed=seed)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _align() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


@contextlib.contextmanager
def traced_rank(out: str | Path | None, meta: dict[str, Any],
                max_steps: int | None = DEFAULT_MAX_STEPS) -> Iterator[TraceHandle | None]:
    """Trace this rank into ``<out>/rank<r>/`` (nothing when ``out`` is None), collectives included."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if out is None:
        _align()
        yield None
        return
    from sat import mpu

    full_meta = {**meta, "rank": rank, "world_size": size,
                 "model_parallel_size": mpu.get_model_parallel_world_size() if mpu.model_parallel_is_initialized()
                 else size}
    handle = trace(rank_dir(out, rank), meta=full_meta, max_steps=max_steps)
    with handle, record_collectives(handle.recorder):
        # The barrier itself is recorded inside this event; the merge aligns the lanes at its end.
        token, _ = handle.recorder.begin("collective", ALIGN_MARK, {"op": ALIGN_MARK, ALIGN_MARK: True,
                                                                    "group_size": size, "bytes": 0})
        try:
            _align()
        finally:
            handle.recorder.end(token)
        yield handle


def broadcast_input(read: Callable[[], Any], rank: int) -> Any:
    """Rank 0 calls ``read()``; every rank returns its value (cli_demo's broadcast_object_list)."""
    box = [read() if rank == 0 else None]
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.broadcast_object_list(box, 0)
    return box[0]


def sample_logits(model: torch.nn.Module, args: Any) -> torch.Tensor:
    """Logits of one fixed context forward (the adapter's inputs, seed 0): the same numbers on
    every rank and in a single process, for comparing sizes. Refuses, in one line, the two states
    that make such a comparison meaningless: dropout on, or a stale shard (:mod:`.checks`)."""
    from sat import mpu

    from ..cogvlm.adapter import ADAPTER
    from .checks import check_eval, check_partition

    check_eval(model)
    size = mpu.get_model_parallel_world_size() if mpu.model_parallel_is_initialized() else 1
    check_partition(model, size, torch.distributed.get_rank() if torch.distributed.is_initialized() else 0)

    with torch.no_grad():
        return model(**ADAPTER.forward_inputs(args, text_tokens=8, image_device="cpu", seed=0))[0]
