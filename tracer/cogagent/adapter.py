"""CogAgent's adapter: CogVLM's answers (same LM, same low-res tower, same text processor and masks)
plus the high-resolution branch.

What differs from :class:`tracer.cogvlm.adapter.CogVLMAdapter`:

* configs, builds and loads are CogAgent's (:mod:`tracer.cogagent.config`, ``build``, ``checkpoint``);
* every forward also gets the high-res copy of the picture as ``cross_image`` (+ the dummy
  ``cross_input_ids`` / ``cross_attention_mask`` upstream's cross image processor makes), and
  ``chat()`` gets the cross image processor (:meth:`chat_options`);
* ``cross_attention_forward`` dispatches carry no vision/language ``branch``: the
  cross-attention treats every token alike (its keys are the high-res image, its queries all
  positions), so the expert split means nothing there.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..cogvlm.adapter import CogVLMAdapter
from ..cogvlm.build import DEFAULT_SEED
from ..cogvlm.config import ModelConfig
from ..cogvlm.image_processor import ImageProcessor, get_image_processor
from ..render.common import human_count
from .build import AgentBuildResult, build_model
from .config import load_config

__all__ = ["ADAPTER", "CogAgentAdapter"]

# Hooks whose work is the same for every token: the expert split is not reported for them.
_NO_EXPERT_SPLIT = frozenset({"cross_attention_forward"})


def _cross_inputs(pix: int, *, seed: int | None, device: str, channels: int = 3) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed + 1) if seed is not None else None
    image = (torch.randn(1, channels, pix, pix, generator=gen) if gen is not None
             else torch.empty(1, channels, pix, pix, device=device))  # (1, 3, P, P)
    return {"cross_image": image, "cross_input_ids": torch.zeros(1, 1, dtype=torch.long),
            "cross_position_ids": None, "cross_attention_mask": torch.ones(1, 1, dtype=torch.long)}


class CogAgentAdapter(CogVLMAdapter):
    """The CogAgent answers to the core's questions (see :mod:`tracer.adapters`)."""

    name = "cogagent"

    # -- build and load -------------------------------------------------------------------
    def load_config(self, spec: str | Path) -> ModelConfig:
        return load_config(spec)

    def build(self, spec: str | ModelConfig, *, device: str = "cpu", num_layers: int | None = None,  # type: ignore[override]
              seed: int = DEFAULT_SEED) -> AgentBuildResult:
        return build_model(spec, device=device, num_layers=num_layers, seed=seed)

    def load(self, spec: str | Path | ModelConfig, *, device: str = "cpu", build_only: bool = False,
             seed: int = DEFAULT_SEED) -> tuple[torch.nn.Module, argparse.Namespace]:
        from .checkpoint import load_model

        return load_model(spec, device=device, build_only=build_only, seed=seed)

    def build_summary(self, result: AgentBuildResult, *, seconds: float, peak_rss_mb: float) -> str:  # type: ignore[override]
        from ..cogvlm.summary import parameter_table

        model, args = result.model, result.args
        eva = args.eva_args
        enc = model.get_mixin("encoder")
        widths = enc.vit.model
        total = result.num_parameters
        lines = [
            f"CogAgentModel  {result.config.path}  on {args.device}",
            f"  language model:    {args.num_layers} layers x {args.hidden_size}, {args.num_attention_heads} heads, "
            f"inner {args.inner_hidden_size}, vocab {args.vocab_size}; cross-attention in every layer "
            f"({args.num_attention_heads} heads of {args.cross_hidden_size_per_attention_head})",
            f"  low-res tower:     {eva['num_layers']} layers x {eva['hidden_size']}, image {eva['image_size'][0]} px, "
            f"patch {eva['patch_size']} -> {args.image_length} image tokens in the sequence",
            f"  high-res encoder:  {len(widths.blocks)} blocks x {widths.cls_token.shape[-1]} (last block unused), "
            f"image {args.cross_image_pix} px -> {enc.cross_image_length} cross tokens (keys/values only)",
            f"  parameters: {total:,} ({human_count(total)})   build: {seconds:.2f} s   peak RSS: {peak_rss_mb:,.0f} MB",
            "",
            "where the parameters live:",
        ]
        table = parameter_table(model)  # type: ignore[arg-type]
        width = max(len(path) for path, _ in table)
        for path, count in table:
            indent = "  " * (path.count(".") - path.startswith("mixins."))
            lines.append(f"  {indent}{path:<{width}}  {count:>16,}")
        lines += ["", "SAT hooks (hook -> who serves it, from model.hook_origins):"]
        for hook, origin in model.hook_origins.items():
            lines.append(f"  {hook:<28} {origin}")
        return "\n".join(lines)

    # -- forward inputs -------------------------------------------------------------------
    def forward_inputs(self, args: argparse.Namespace, *, text_tokens: int = 16, image_device: str = "meta",
                       seed: int | None = None) -> dict[str, Any]:
        """CogVLM's layout (low-res image slots and the three masks) plus the high-res image."""
        inputs = super().forward_inputs(args, text_tokens=text_tokens, image_device=image_device, seed=seed)
        return {**inputs, **_cross_inputs(int(args.cross_image_pix), seed=seed, device=image_device)}

    def prompt_inputs(self, config: ModelConfig, query: str, *, image: Any = None, version: str = "chat",
                      max_length: int = 4096, with_image: bool = True) -> dict[str, Any]:
        """A real prompt's keyword arguments; the high-res copy of the same picture is always there
        (upstream's forward needs it even for a text-only prompt)."""
        from ..cogvlm import SAMPLE_IMAGE
        from ..cogvlm.image_processor import open_image

        inputs = super().prompt_inputs(config, query, image=image, version=version, max_length=max_length,
                                       with_image=with_image)
        picture = open_image(SAMPLE_IMAGE) if image is None else image
        cross = self.cross_image_processor(config)(picture)
        return {**inputs, **{f"cross_{k}": v for k, v in cross.items()}}

    def cross_image_processor(self, config: ModelConfig) -> ImageProcessor:
        """Upstream's ``get_image_processor(model_args.cross_image_pix)``."""
        return get_image_processor(int(config.values["cross_image_pix"]))

    def chat_options(self, config: ModelConfig) -> dict[str, Any]:
        """Extra keyword arguments of :func:`tracer.cogvlm.chat.chat` for this model."""
        return {"cross_image_processor": self.cross_image_processor(config)}

    # -- what one hook dispatch means -----------------------------------------------------
    def dispatch_facts(self, hook: str, kwargs: Mapping[str, Any], weights: Sequence[str],
                       cache: dict[int, Any]) -> dict[str, Any] | None:
        if hook in _NO_EXPERT_SPLIT:
            return None
        return super().dispatch_facts(hook, kwargs, weights, cache)


ADAPTER = CogAgentAdapter()
