"""Rotary position embedding that runs on any device, with the math of SAT's Triton kernel.

SAT's ``LLaMAModel`` and CogVLM's vision-expert attention rotate queries and keys with
``sat.model.position_embedding.triton_rotary_embeddings.FastRotaryEmbedding``. Its kernel is
written in Triton and launched under ``torch.cuda.device(x.device.index)``, so on a CPU the
forward pass dies with ``TypeError: '<' not supported between 'NoneType' and 'int'``.
This module provides:

* :func:`apply_rotary_torch` — the kernel's computation in plain torch (non-interleaved,
  GPT-NeoX style, and interleaved, GPT-J style);
* :class:`AnyDeviceRotaryEmbedding` — a ``FastRotaryEmbedding`` whose forward uses the
  Triton kernel on CUDA and the torch version elsewhere; same buffers, so the same
  checkpoint keys. Our CogVLM uses it directly;
* :func:`patch_fast_rotary` — a context manager (and :func:`install_cpu_rotary` /
  :func:`uninstall_cpu_rotary`) that gives SAT's own ``FastRotaryEmbedding`` the same
  forward, so that upstream CogVLM's model code (from a user's checkout) runs on a CPU.

The kernel indexes the cos/sin tables with ``position_ids`` rather than with the token's
index: that is how every CogVLM image token shares one rotary position.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from sat.model.position_embedding.triton_rotary_embeddings import FastRotaryEmbedding

__all__ = [
    "AnyDeviceRotaryEmbedding",
    "apply_rotary_torch",
    "install_cpu_rotary",
    "patch_fast_rotary",
    "uninstall_cpu_rotary",
]


def apply_rotary_torch(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: torch.Tensor,
    interleaved: bool = False,
) -> torch.Tensor:
    """Rotate ``x`` like SAT's ``apply_rotary`` Triton kernel; returns a new tensor.

    x: (batch, nheads, seqlen, headdim); cos, sin: (seqlen_ro, rotary_dim / 2);
    position_ids: (batch, seqlen), each an index into the cos/sin tables.
    """
    if x.dim() != 4:
        raise ValueError(f"rotary input must be (batch, heads, seq, head_dim), got shape {tuple(x.shape)}")
    half = cos.shape[-1]
    rotary_dim = 2 * half
    if rotary_dim > x.shape[-1]:
        raise ValueError(f"rotary_dim {rotary_dim} exceeds head_dim {x.shape[-1]}")
    cos_p = cos[position_ids].unsqueeze(1).to(x.dtype)  # (B, 1, S, rd/2)
    sin_p = sin[position_ids].unsqueeze(1).to(x.dtype)  # (B, 1, S, rd/2)
    rot = x[..., :rotary_dim]
    if interleaved:
        x0, x1 = rot[..., 0::2], rot[..., 1::2]  # pairs (0,1), (2,3), ...
        out = torch.stack((x0 * cos_p - x1 * sin_p, x0 * sin_p + x1 * cos_p), dim=-1).flatten(-2)
    else:
        x0, x1 = rot[..., :half], rot[..., half:]  # first half / second half
        out = torch.cat((x0 * cos_p - x1 * sin_p, x0 * sin_p + x1 * cos_p), dim=-1)
    if rotary_dim < x.shape[-1]:
        out = torch.cat((out, x[..., rotary_dim:]), dim=-1)
    return out


_triton_forward: Callable[..., tuple[torch.Tensor, torch.Tensor]] = FastRotaryEmbedding.forward


def _any_device_forward(
    self: FastRotaryEmbedding,
    q: torch.Tensor,
    k: torch.Tensor,
    position_id: torch.Tensor,
    max_seqlen: Any,
    layer_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``FastRotaryEmbedding.forward`` for every device: Triton on CUDA, torch elsewhere."""
    if q.is_cuda:
        return _triton_forward(self, q, k, position_id, max_seqlen, layer_id)
    if q.is_meta:
        # A rotation keeps shapes; meta tensors carry nothing else to compute.
        return q, k
    if position_id.shape[0] != q.shape[0]:
        position_id = position_id.expand(q.shape[0], -1)
    # Same cache as the CUDA path (fp32 or inv_freq dtype, as configured), so the tables match.
    self._update_cos_sin_cache(int(max_seqlen), position_id, device=q.device, dtype=q.dtype)
    # New tensors, not ``q.copy_(...)`` like the kernel: q and k are views of a permuted QKV
    # projection, and writing into a view breaks autograd ("Output 0 of Permute is a view and is
    # being modified inplace"), so training could not take a step. Every caller (SAT's LLaMA
    # attention, Mixtral, our and upstream's vision-expert attention) uses the returned tensors.
    q_out = apply_rotary_torch(q, self._cos_cached, self._sin_cached, position_id, self.interleaved)
    k_out = apply_rotary_torch(k, self._cos_cached, self._sin_cached, position_id, self.interleaved)
    return q_out, k_out


class AnyDeviceRotaryEmbedding(FastRotaryEmbedding):
    """SAT's ``FastRotaryEmbedding`` (same buffers and state-dict keys) that also runs off CUDA."""

    forward = _any_device_forward  # type: ignore[assignment]


def install_cpu_rotary() -> None:
    """Give SAT's ``FastRotaryEmbedding`` the any-device forward, process-wide. Idempotent."""
    FastRotaryEmbedding.forward = _any_device_forward  # type: ignore[method-assign]


def uninstall_cpu_rotary() -> None:
    """Restore SAT's original Triton-only forward. Idempotent."""
    FastRotaryEmbedding.forward = _triton_forward  # type: ignore[method-assign]


@contextlib.contextmanager
def patch_fast_rotary() -> Iterator[None]:
    """Run upstream CogVLM (or any SAT model using ``FastRotaryEmbedding``) on a CPU.

    Example::

        from tracer.rotary import patch_fast_rotary
        with patch_fast_rotary():
            logits = upstream_model(**inputs)[0]

    The patch is on the class, so it reaches every instance however it was imported,
    and the original forward is back when the block exits, even on an exception.
    """
    previous = FastRotaryEmbedding.forward
    FastRotaryEmbedding.forward = _any_device_forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        FastRotaryEmbedding.forward = previous  # type: ignore[method-assign]
