"""How much memory a CPU build of a config needs, known before anything is allocated.

A config with ``num_layers`` 1e9 or ``hidden_size`` 2^20 used to allocate for a minute and
then die in the allocator. The answer is cheap on the meta device: SAT builds the real model
there with shapes and no memory. Even a meta build of 1e9 layers takes forever, though, so we
build one- and two-layer versions of the language model and of the vision tower on meta and
extrapolate (every layer of a stack has the same parameters), which takes well under a second.

A rough count from the config's widths comes first: a model far below the free memory (every
tiny config) needs no meta build at all.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .config import ConfigError, ModelConfig

__all__ = ["BYTES_PER_PARAMETER", "check_fits", "count_parameters", "rough_parameters"]

BYTES_PER_PARAMETER = 4  # float32: what a CPU build holds
# Below this share of the free memory the rough count decides alone: it is off by far less.
ROUGH_SHARE = 0.1


def rough_parameters(config: ModelConfig, num_layers: int | None = None) -> int:
    """An estimate from the widths (attention and FFN twice per layer for the vision experts,
    embeddings and lm_head, the vision tower); within a few per cent of the real count."""
    v, eva = config.values, config.eva
    layers = int(num_layers if num_layers is not None else v["num_layers"])
    hidden = int(v["hidden_size"])
    inner = int(v.get("inner_hidden_size") or 4 * hidden)
    lm_layer = 2 * (4 * hidden * hidden + 3 * hidden * inner)
    eh = int(eva["hidden_size"])
    e_inner = int(eva.get("inner_hidden_size") or 4 * eh)
    eva_layer = 4 * eh * eh + 2 * eh * e_inner
    return layers * lm_layer + 2 * int(v["vocab_size"]) * hidden + int(eva["num_layers"]) * eva_layer


def _meta_count(config: ModelConfig, lm_layers: int, eva_layers: int) -> int:
    from ..session import active_recorder
    from .build import build_model

    recorder = active_recorder()  # our own sizing is not part of what a trace shows
    with recorder.suppressed() if recorder is not None else contextlib.nullcontext():
        eva = dict(config.eva, num_layers=eva_layers)
        model = build_model(config, device="meta", num_layers=lm_layers, overrides={"eva_args": eva},
                            check_memory=False).model
    return sum(p.numel() for p in model.parameters())


def count_parameters(config: ModelConfig, num_layers: int | None = None) -> int:
    """The exact parameter count of ``config`` (with ``num_layers`` layers if given), from three
    small meta builds: base + L x (one language layer) + E x (one vision layer)."""
    one = _meta_count(config, 1, 1)
    per_lm = _meta_count(config, 2, 1) - one
    per_eva = _meta_count(config, 1, 2) - one
    layers = int(num_layers if num_layers is not None else config.values["num_layers"])
    return one - per_lm - per_eva + layers * per_lm + int(config.eva["num_layers"]) * per_eva


def _available_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(config: ModelConfig, num_layers: int | None = None, available: int | None = None) -> None:
    """Refuse, in about a second and before any allocation, a CPU build that cannot fit in memory."""
    free = _available_bytes() if available is None else available
    if rough_parameters(config, num_layers) * BYTES_PER_PARAMETER < ROUGH_SHARE * free:
        return
    count = count_parameters(config, num_layers)
    need = count * BYTES_PER_PARAMETER
    if need > free:
        raise ConfigError(f"{config.path}: {count:,} parameters need {_gb(need)} in float32 on the CPU and this "
                          f"machine has {_gb(free)} free; expected a smaller config, or build it with "
                          f"--device meta (shapes only, no memory)")


def _gb(n: Any) -> str:
    return f"{n / 2**30:.1f} GB"
