"""The CPU substitution for SAT's split-at-load: ``mp_split_model_rank0`` without ``.cuda()``.

``BaseModel.from_pretrained(path, overwrite_args={'model_parallel_size': N})`` loads an mp=1
checkpoint on rank 0 and hands each rank its slice: rank 0 runs
``sat.mpu.operation.mp_split_model_rank0`` (send), the others ``mp_split_model_receive``
(receive). The sender moves every slice to the GPU before ``torch.distributed.send``
(``new_weights[i].cuda()``), so on a machine without CUDA the load dies there.

:func:`split_model_rank0_cpu` is the same sender with the tensor left where it is (gloo sends
CPU tensors). The slices come from each parallel layer's own ``partition()`` (SAT's slicing,
strides of a fused QKV included), and the messages go in the order SAT's unchanged receiver
expects: a depth-first walk over ``named_children``; for ``ColumnParallelLinear`` /
``RowParallelLinear`` / ``VocabParallelEmbedding`` one ``send`` of the weight per rank (and of
the bias when there is one); for every other module a ``broadcast`` of each own parameter.
:func:`split_at_load_on_cpu` swaps it in for the duration of one ``from_pretrained`` call.
Tested against SAT's in-place ``repartition`` (``tests/test_parallel.py``): the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["PARALLEL_LAYERS", "split_at_load_on_cpu", "split_model_rank0_cpu"]


def _parallel_layers() -> tuple[type[nn.Module], ...]:
    from sat.mpu import ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding

    return (ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding)


PARALLEL_LAYERS = _parallel_layers()


def split_model_rank0_cpu(model: nn.Module, model_full: nn.Module, use_node_group: bool = True) -> None:
    """Rank 0's side of SAT's split-at-load: keep slice 0 of each parallel weight, send slice i
    to rank ``src + i``, broadcast every other parameter. ``model`` is this rank's (already
    partitioned) model, ``model_full`` the mp=1 model loaded from the checkpoint."""
    from sat.mpu import initialize as mpu_init

    if use_node_group:
        group, src, size = mpu_init.get_node_group(), mpu_init.get_node_src_rank(), mpu_init.get_node_world_size()
    else:
        group = mpu_init.get_model_parallel_group()
        src, size = mpu_init.get_model_parallel_src_rank(), mpu_init.get_model_parallel_world_size()

    def send_slices(local: torch.Tensor, slices: list[torch.Tensor]) -> None:
        for i in range(size):
            piece = slices[(src + i) % len(slices)]
            if i == 0:
                local.data.copy_(piece)
            else:  # SAT: torch.distributed.send(piece.cuda(), src + i)
                torch.distributed.send(piece.contiguous(), src + i)

    def walk(new: Any, full: Any) -> None:
        for (_, child), (_, full_child) in zip(new.named_children(), full.named_children(), strict=True):
            new_child: Any = child  # SAT's parallel layers: .weight / .bias tensors
            if isinstance(full_child, PARALLEL_LAYERS):
                weights, biases = full_child.partition()  # type: ignore[operator]
                send_slices(new_child.weight, weights)
                if biases:
                    send_slices(new_child.bias, biases)
            else:
                own_new = dict(new_child.named_parameters(recurse=False))
                for name, param in full_child.named_parameters(recurse=False):
                    own_new[name].data.copy_(param.data)
                    torch.distributed.broadcast(own_new[name].data, src, group=group)
            walk(new_child, full_child)

    walk(model, model_full)


@contextlib.contextmanager
def split_at_load_on_cpu() -> Iterator[None]:
    """Inside the block, ``from_pretrained``'s split-at-load sends CPU tensors (see the module
    docstring). SAT's name is put back on exit, also when the load raises."""
    import sat.model.base_model as base_model

    original = base_model.mp_split_model_rank0
    base_model.mp_split_model_rank0 = split_model_rank0_cpu  # type: ignore[assignment]
    try:
        yield
    finally:
        base_model.mp_split_model_rank0 = original
