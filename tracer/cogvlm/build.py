"""The article's section 2, as a function: from ``model_config.json`` to a built CogVLM.

Each step is a real SAT call, in the article's order, so a tracer sees exactly what the
article's reader sees::

    args = CogVLMModel.get_args()                       # SAT defaults
    args = update_args_with_file(args, model_config)    # the checkpoint's architecture
    args = overwrite_args_by_dict(args, {})             # caller overrides
    args.rank = ...; args.mode = 'inference'; ...       # environment settings
    model = get_model(args, CogVLMModel)                # __init__ chain, mixins, dtype, device
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from sat.arguments import overwrite_args_by_dict, update_args_with_file
from sat.model.base_model import get_model

from ..devices import ForceDevice
from ..errors import UserError
from ..values import count_parameters
from .config import ModelConfig, load_config
from .config_types import check_config_types
from .memory import check_fits
from .model import CogVLMModel

__all__ = ["DEFAULT_SEED", "BuildResult", "build_model", "environment_args", "inference_args"]

DEFAULT_SEED = 1234  # SAT's own default seed (sat.arguments)
DEVICES = ("cpu", "meta", "cuda")


@dataclass
class BuildResult:
    model: CogVLMModel
    args: argparse.Namespace
    config: ModelConfig

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)


def environment_args(args: argparse.Namespace, *, device: str = "cpu", seed: int = DEFAULT_SEED,
                     skip_init: bool | None = None) -> argparse.Namespace:
    """Set the run-time keys the article and ``cli_demo.py`` set for one process, in place.

    ``skip_init`` defaults to False except on meta: the article sets True, which leaves
    uninitialised memory (NaN logits on a tiny model), so we initialise from the seed; a
    checkpoint load overwrites every weight anyway.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: expected one of {list(DEVICES)}")
    if seed <= 0:  # SAT's _simple_init asserts it, deep inside BaseModel.__init__
        raise UserError(f"seed {seed}: expected a positive integer (SAT seeds its initialisation with it)")
    args.deepspeed = None
    args.local_rank = int(os.environ.get("LOCAL_RANK", 0))
    args.rank = int(os.environ.get("RANK", 0))
    args.world_size = int(os.environ.get("WORLD_SIZE", 1))
    args.model_parallel_size = args.world_size
    args.mode = "inference"
    args.skip_init = device == "meta" if skip_init is None else skip_init
    args.use_gpu_initialization = device == "cuda"
    args.device = device
    args.fp16 = False
    args.bf16 = False
    args.seed = seed
    return args


def inference_args(config: ModelConfig, *, device: str = "cpu", num_layers: int | None = None,
                   seed: int = DEFAULT_SEED, overrides: dict[str, Any] | None = None,
                   model_cls: type = CogVLMModel) -> argparse.Namespace:
    """The article's Namespace: SAT defaults (of ``model_cls``) <- model_config.json <- overrides <- environment."""
    args = model_cls.get_args()  # type: ignore[attr-defined]
    args = update_args_with_file(args, path=str(config.path))
    args = overwrite_args_by_dict(args, overwrite_args=dict(overrides or {}))
    environment_args(args, device=device, seed=seed)
    if num_layers is not None:
        if num_layers <= 0:
            raise ValueError(f"num_layers {num_layers}: expected a positive integer")
        args.num_layers = num_layers  # the article's own trick: `args.num_layers = 2`
    return args


@contextlib.contextmanager
def placement(device: str, seed: int) -> Iterator[None]:
    """Where and from which seed a build happens: ``torch.manual_seed(seed)``, and on ``meta``
    every tensor factory forced onto the meta device (:class:`tracer.devices.ForceDevice`)."""
    torch.manual_seed(seed)
    with ForceDevice("meta") if device == "meta" else contextlib.nullcontext():
        yield


def build_model(spec: str | ModelConfig, *, device: str = "cpu", num_layers: int | None = None,
                seed: int = DEFAULT_SEED, overrides: dict[str, Any] | None = None,
                check_memory: bool = True) -> BuildResult:
    """Build CogVLM through SAT's ``get_model`` the way the article does.

    ``device='meta'`` builds the full 17.6B model in about a second and no memory: every
    tensor factory is forced onto the meta device (see :class:`tracer.devices.ForceDevice`).
    A CPU build that cannot fit in free memory is refused first (:func:`.memory.check_fits`).
    """
    config = spec if isinstance(spec, ModelConfig) else load_config(spec)
    check_config_types(config)
    if device == "cpu" and check_memory:
        check_fits(config, num_layers)
    args = inference_args(config, device=device, num_layers=num_layers, seed=seed, overrides=overrides)
    with placement(device, seed):
        model = get_model(args, CogVLMModel)
    model.eval()
    return BuildResult(model=model, args=args, config=config)
