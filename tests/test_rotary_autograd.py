"""The CPU rotary is autograd-safe: a backward through it runs, for our model and for SAT's own
``FastRotaryEmbedding`` under ``upstream_on_cpu()``, and its gradients match an independent
float64 reference (a rotation's vector-Jacobian product is the inverse rotation)."""

from __future__ import annotations

import pytest
import torch
from sat.model.position_embedding.triton_rotary_embeddings import FastRotaryEmbedding

from tracer.cogvlm.upstream import upstream_on_cpu
from tracer.rotary import AnyDeviceRotaryEmbedding

POSITIONS = torch.tensor([[0, 1, 2, 2, 2, 2, 3, 4, 5]])  # BOS, boi, 4 image tokens sharing 2, eoi, text


def rotate_back(grad: torch.Tensor, positions: torch.Tensor, rotary_dim: int, interleaved: bool) -> torch.Tensor:
    """The gradient of a rotation by angle a is the upstream gradient rotated by -a (float64)."""
    theta = 10000.0 ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    angle = -positions.double()[:, None, :, None] * theta
    cos, sin = angle.cos(), angle.sin()
    g = grad.double()
    rot, rest = g[..., :rotary_dim], g[..., rotary_dim:]
    if interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    else:
        half = rotary_dim // 2
        a, b = rot[..., :half], rot[..., half:]
        out = torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return torch.cat((out, rest), dim=-1)


def _views_of_permuted_qkv(head_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q and k as SAT's attention makes them: views of a permuted projection output."""
    gen = torch.Generator().manual_seed(seed)
    leaf = torch.randn(2, POSITIONS.shape[1], 2 * 3 * head_dim, generator=gen, requires_grad=True)
    qk = (leaf * 1.0).view(2, POSITIONS.shape[1], 2, 3, head_dim).permute(2, 0, 3, 1, 4)  # (2, B, nh, S, hd)
    return leaf, qk[0], qk[1]


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(("head_dim", "rotary_dim"), [(16, 16), (32, 16)])
def test_gradients_match_the_inverse_rotation(interleaved: bool, head_dim: int, rotary_dim: int) -> None:
    rope = AnyDeviceRotaryEmbedding(rotary_dim, interleaved=interleaved)
    leaf, q, k = _views_of_permuted_qkv(head_dim, seed=0)
    q_out, k_out = rope(q, k, POSITIONS, max_seqlen=POSITIONS.max() + 1)
    gen = torch.Generator().manual_seed(1)
    gq, gk = torch.randn(q_out.shape, generator=gen), torch.randn(k_out.shape, generator=gen)
    grad_q, grad_k = torch.autograd.grad((q_out * gq).sum() + (k_out * gk).sum(), (q, k))
    positions = POSITIONS.expand(2, -1)
    torch.testing.assert_close(grad_q.double(), rotate_back(gq, positions, rotary_dim, interleaved), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_k.double(), rotate_back(gk, positions, rotary_dim, interleaved), atol=1e-5, rtol=1e-5)
    assert leaf.grad is None  # autograd.grad does not accumulate; the leaf is untouched


def test_gradcheck_in_float64() -> None:
    rope = AnyDeviceRotaryEmbedding(8).double()
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(1, 2, POSITIONS.shape[1], 8, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, POSITIONS.shape[1], 8, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: rope(a, b, POSITIONS, max_seqlen=6), (q, k))


def test_sats_class_trains_under_upstream_on_cpu() -> None:
    original = FastRotaryEmbedding.forward
    rope = FastRotaryEmbedding(16)
    with upstream_on_cpu():
        leaf, q, k = _views_of_permuted_qkv(16, seed=3)
        q_out, k_out = rope(q, k, POSITIONS, max_seqlen=POSITIONS.max() + 1)
        (q_out.square().sum() + k_out.square().sum()).backward()
    assert FastRotaryEmbedding.forward is original
    # A rotation keeps the norm, so d/dx |R x|^2 = 2x: the gradient flows back exactly.
    assert leaf.grad is not None
    torch.testing.assert_close(leaf.grad, 2 * leaf.detach(), atol=1e-5, rtol=1e-5)


def test_tiny_cogvlm_takes_a_gradient_step() -> None:
    """A whole forward + backward of the tiny model: every parameter that the loss reaches gets a
    finite gradient, and inference numbers are those of a no-grad forward."""
    from tests.conftest import tiny_forward_inputs
    from tracer.cogvlm.build import build_model

    built = build_model("tiny/cogvlm-base-224")
    model, inputs = built.model, tiny_forward_inputs(built.args, text_len=4)
    with torch.no_grad():
        reference = model(**inputs)[0]
    logits = model(**inputs)[0]  # eval mode (no dropout), autograd on
    torch.testing.assert_close(logits.detach(), reference, atol=0, rtol=0)
    logits.float().logsumexp(-1).mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert any(".rotary." in name or "query_key_value" in name for name in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
