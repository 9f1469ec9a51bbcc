"""From ``model_config.json`` to a built CogAgent, through SAT's own calls (as CogVLM's build)::

    args = CogAgentModel.get_args()                      # SAT defaults + CogAgent's arguments
    args = update_args_with_file(args, model_config)     # the checkpoint's architecture
    args = overwrite_args_by_dict(args, overrides)
    environment_args(args, ...)                          # rank, mode, device, seed
    model = get_model(args, CogAgentModel)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from sat.model.base_model import get_model

from ..cogvlm.build import DEFAULT_SEED, placement
from ..cogvlm.build import inference_args as cogvlm_inference_args
from ..cogvlm.config import ModelConfig
from ..values import count_parameters
from .config import load_config
from .model import CogAgentModel

__all__ = ["AgentBuildResult", "build_model", "inference_args"]


@dataclass
class AgentBuildResult:
    model: CogAgentModel
    args: argparse.Namespace
    config: ModelConfig

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)


def inference_args(config: ModelConfig, *, device: str = "cpu", num_layers: int | None = None,
                   seed: int = DEFAULT_SEED, overrides: dict[str, Any] | None = None) -> argparse.Namespace:
    """CogVLM's Namespace with CogAgent's defaults; ``num_layers`` also trims ``is_decoder``."""
    args = cogvlm_inference_args(config, device=device, num_layers=num_layers, seed=seed, overrides=overrides,
                                 model_cls=CogAgentModel)
    if num_layers is not None and isinstance(args.is_decoder, list):  # SAT indexes it per layer
        args.is_decoder = args.is_decoder[:num_layers]
    return args


def build_model(spec: str | ModelConfig, *, device: str = "cpu", num_layers: int | None = None,
                seed: int = DEFAULT_SEED, overrides: dict[str, Any] | None = None) -> AgentBuildResult:
    """Build CogAgent through SAT's ``get_model``; ``device='meta'`` builds the full 18B model with no memory."""
    config = spec if isinstance(spec, ModelConfig) else load_config(spec)
    args = inference_args(config, device=device, num_layers=num_layers, seed=seed, overrides=overrides)
    with placement(device, seed):
        model = get_model(args, CogAgentModel)
    model.eval()
    return AgentBuildResult(model=model, args=args, config=config)
