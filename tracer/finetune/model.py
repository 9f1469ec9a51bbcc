"""Upstream's fine-tuning model class and its rule for which parameters train.

``FineTuneTrainCogVLMModel`` is upstream's name (``utils/models/cogvlm_model.py``): CogVLM with
the fine-tuning options on its argument parser. Which parameters train is decided by
``disable_untrainable_params``, which SAT's ``training_main`` calls before building the
optimizer. Upstream's rule (``finetune_demo/finetune_cogvlm_demo.py``) enables

* every parameter whose name holds both ``mlp`` and ``vit`` in layers 46-54 (strictly between
  45 and 55): the MLPs of nine of the EVA tower's 63 layers — always, LoRA or not;
* with ``--use_lora``: every ``matrix_A`` / ``matrix_B`` (the LoRA factors);

and freezes the rest. So upstream's "Total trainable parameters" (issue #189: the log says
262M, the paper 6.6B for its pre-training) counts the nine EVA MLPs plus LoRA's factors, not the
language model's vision expert; ``docs/faq.md`` gives the count measured on the full config.
:func:`trainable_table` gives each enabled parameter with the clause that enabled it.

Full fine-tuning (no LoRA) here trains every parameter; upstream's demo has no such mode (its
rule without LoRA trains the nine EVA MLPs only), so that mode says so in its "why".
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..cogvlm.model import CogVLMModel

__all__ = ["EVA_MLP_LAYERS", "FineTuneTrainCogVLMModel", "TrainableRow", "apply_trainable_rule", "trainable_table",
           "why_trainable"]

EVA_MLP_LAYERS = (45, 55)  # upstream's window, exclusive on both ends: layers 46..54


class FineTuneTrainCogVLMModel(CogVLMModel):
    """CogVLM with upstream's fine-tuning arguments (``--lora_rank``, ``--use_lora``, ``--layer_range``)."""

    def __init__(self, args: argparse.Namespace, transformer: Any = None, **kw_args: Any) -> None:
        super().__init__(args, transformer=transformer, **kw_args)
        self.args = args  # disable_untrainable_params reads the options from here, as upstream

    @classmethod
    def add_model_specific_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = parser.add_argument_group("CogVLM-finetune", "CogVLM finetune Configurations")
        group.add_argument("--lora_rank", type=int, default=10)
        group.add_argument("--use_lora", action="store_true")
        group.add_argument("--layer_range", nargs="+", type=int, default=None)
        group.add_argument("--full_finetune", action="store_true")
        return super().add_model_specific_args(parser)

    def disable_untrainable_params(self) -> None:
        """Called by SAT's ``training_main``: freeze what the rule does not enable."""
        apply_trainable_rule(self, use_lora=bool(getattr(self.args, "use_lora", False)),
                             full=bool(getattr(self.args, "full_finetune", False)))


@dataclass(frozen=True)
class TrainableRow:
    name: str
    shape: tuple[int, ...]
    count: int
    why: str


def why_trainable(name: str, use_lora: bool, full: bool) -> str | None:
    """The clause of the rule that enables ``name``, or None (frozen)."""
    if full:
        return "full fine-tuning: every parameter"
    lower = name.lower()
    if "mlp" in lower and "vit" in lower:
        try:
            layer = int(name[:name.find(".mlp")].split(".")[-1])
        except ValueError:
            layer = -1
        if EVA_MLP_LAYERS[0] < layer < EVA_MLP_LAYERS[1]:
            return f"upstream rule: EVA MLP in layers 46-54 (layer {layer})"
    if use_lora and ("matrix_a" in lower or "matrix_b" in lower):
        return "LoRA factor (" + ("matrix_A: down-projection" if "matrix_a" in lower else "matrix_B: up-projection") + ")"
    return None


def trainable_table(model: nn.Module, *, use_lora: bool, full: bool = False) -> list[TrainableRow]:
    """Every parameter the rule enables, with its shape, size and the clause that enabled it."""
    rows = []
    for name, param in model.named_parameters():
        why = why_trainable(name, use_lora, full)
        if why is not None:
            rows.append(TrainableRow(name, tuple(param.shape), param.numel(), why))
    return rows


def apply_trainable_rule(model: nn.Module, *, use_lora: bool, full: bool = False) -> int:
    """Freeze every parameter the rule does not enable; returns how many weights stay trainable."""
    total = 0
    for name, param in model.named_parameters():
        if why_trainable(name, use_lora, full) is None:
            param.requires_grad_(False)
        else:
            total += param.numel()
    return total
