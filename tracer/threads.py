"""Torch threads for small models: one.

A tiny model's step is too little work to split: on a busy 2-core machine two threads ran a
tiny chat turn 6-8x slower than one and made traced times swing by seconds. Every command
that runs a model goes through :func:`threads_for`, which restores the previous setting on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["SINGLE_THREAD_BELOW", "threads_for"]

# Below this many parameters a step runs on one thread (measured: see the module docstring).
SINGLE_THREAD_BELOW = 100_000_000


@contextlib.contextmanager
def threads_for(parameters: int, requested: int | None = None) -> Iterator[None]:
    """Inside the block torch uses ``requested`` threads, or one for a model of fewer than
    :data:`SINGLE_THREAD_BELOW` parameters, or its default."""
    import torch

    if requested is None and parameters < SINGLE_THREAD_BELOW:
        requested = 1
    previous = torch.get_num_threads()
    if requested is not None:
        torch.set_num_threads(requested)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
