"""SAT on a machine without CUDA: the substitutions ``cogtrace run`` applies, and naming what is left.

SAT 0.4.12 runs on a CPU except where it calls a GPU-only kernel. Measured on its official
models (BERT, ViT, GLM, ChatGLM2, LLaMA, EVA2CLIP, GPT2, Mixtral): only the rotary embedding
(``FastRotaryEmbedding``, a Triton kernel) needs a substitute, and :mod:`tracer.rotary` gives it
the same math in torch. :func:`cpu_substitutions` applies it for a block when CUDA is absent
and says which substitutions it applied, so a trace can name them in its metadata.

A script that still reaches a GPU-only path fails inside torch.cuda, Triton or a CUDA
extension; :func:`gpu_only_path` turns that exception into one line naming the call that
needed the GPU.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Iterator

__all__ = ["cpu_substitutions", "gpu_only_path"]

# Where a GPU-only call fails: frames in these packages, or these words in the message.
_GPU_FILES = re.compile(r"[/\\](torch[/\\]cuda|triton|xformers|apex|flash_attn)[/\\]")
_GPU_WORDS = re.compile(r"CUDA|cuda|NVIDIA|nccl|Found no NVIDIA driver")


@contextlib.contextmanager
def cpu_substitutions(force: bool = False) -> Iterator[list[str]]:
    """Apply SAT's CPU substitutions when CUDA is absent (or ``force``); yields their names
    (empty on a CUDA machine). Everything is undone on exit, also on an exception."""
    import torch

    applied: list[str] = []
    with contextlib.ExitStack() as stack:
        if force or not torch.cuda.is_available():
            from .rotary import patch_fast_rotary

            stack.enter_context(patch_fast_rotary())
            applied.append("rotary: sat FastRotaryEmbedding.forward -> tracer.rotary (torch, same math)")
        yield applied


def gpu_only_path(exc: BaseException) -> str | None:
    """One line naming the GPU-only call ``exc`` came from, or None when it is not one."""
    frames = traceback.extract_tb(exc.__traceback__)
    hit = next((i for i, f in enumerate(frames) if _GPU_FILES.search(f.filename)), None)
    if hit is None and not _GPU_WORDS.search(str(exc)):
        return None
    # The caller: the last frame before the GPU-only package (the line that asked for the GPU).
    caller = frames[hit - 1] if hit else (frames[-1] if frames else None)
    where = f"{caller.filename}:{caller.lineno} ({caller.name})" if caller is not None else "the script"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"{where} needs a CUDA GPU ({type(exc).__name__}: {first}); cogtrace run has no CPU "
            f"substitute for it on this machine")
