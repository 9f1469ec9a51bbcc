"""CogVLM's adapter: what the model-agnostic core asks of a model, answered for CogVLM.

Registered in :data:`tracer.adapters.REGISTRY`. The core calls these through ``ADAPTER``:

* building and loading (:meth:`CogVLMAdapter.build`, :meth:`CogVLMAdapter.load`);
* the keyword arguments of one forward — :meth:`~CogVLMAdapter.forward_inputs` (layout only:
  synthetic ids, any width, also on meta) and :meth:`~CogVLMAdapter.prompt_inputs` (a real
  prompt through the text processor and the sample picture, as ``chat()`` builds them);
* per-dispatch facts (:meth:`~CogVLMAdapter.dispatch_facts`): which tokens a hook sent to the
  vision experts, read from ``vision_expert_mask``;
* the token layout of a prompt (:meth:`~CogVLMAdapter.token_layout`, drawn by
  :mod:`tracer.cogvlm.views`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .build import DEFAULT_SEED, BuildResult, build_model
from .config import ModelConfig, load_config
from .text_processor import TextProcessor, masks_and_position_ids, position_ids_from_rope_mask

__all__ = ["ADAPTER", "CogVLMAdapter"]

EXPERT_MASK = "vision_expert_mask"  # the keyword SAT passes to every layer's hooks


class CogVLMAdapter:
    """The CogVLM answers to the core's questions (see :mod:`tracer.adapters`)."""

    name = "cogvlm"

    # -- build and load -------------------------------------------------------------------
    def load_config(self, spec: str | Path) -> ModelConfig:
        """The checked config, values typed as SAT's argparse declares them (before any build)."""
        from .config_types import check_config_types

        config = load_config(spec)
        check_config_types(config)
        return config

    def build(self, spec: str | ModelConfig, *, device: str = "cpu", num_layers: int | None = None,
              seed: int = DEFAULT_SEED) -> BuildResult:
        return build_model(spec, device=device, num_layers=num_layers, seed=seed)

    def load(self, spec: str | Path | ModelConfig, *, device: str = "cpu", build_only: bool = False,
             seed: int = DEFAULT_SEED) -> tuple[torch.nn.Module, argparse.Namespace]:
        from .checkpoint import load_model

        return load_model(spec, device=device, build_only=build_only, seed=seed)

    def build_summary(self, result: BuildResult, *, seconds: float, peak_rss_mb: float) -> str:
        """What ``cogtrace build`` prints: parameters per part, time, memory."""
        from .summary import format_build_summary

        return format_build_summary(result, seconds=seconds, peak_rss_mb=peak_rss_mb)

    # -- forward inputs -------------------------------------------------------------------
    def forward_inputs(self, args: argparse.Namespace, *, text_tokens: int = 16, image_device: str = "meta",
                       seed: int | None = None) -> dict[str, Any]:
        """The keyword arguments of one context forward, in upstream's layout, at any width.

        ``[BOS] [boi] L image slots [eoi] text``: ``image_embed_mask`` on boi..eoi (L+2),
        ``vision_expert_mask`` on boi..last image slot (L+1), ``image_rope_mask`` on the L slots,
        which share one position id. Ids and masks are real CPU tensors. With ``seed`` the text ids
        and the image are random (fixed by the seed); without, the ids count up and the image is
        an empty tensor on ``image_device`` (its values do not matter to shapes).
        """
        if text_tokens < 1:
            raise ValueError(f"text_tokens={text_tokens}: expected at least 1")
        L = int(args.image_length)
        seq_len = 1 + (L + 2) + text_tokens
        vocab = int(args.vocab_size)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        text = (torch.randint(3, vocab, (text_tokens,), generator=gen) if gen is not None
                else torch.arange(text_tokens) % max(vocab - 3, 1) + 3)
        input_ids = torch.cat([torch.tensor([int(getattr(args, "bos_token_id", 1))]),
                               torch.zeros(L + 2, dtype=torch.long), text])  # (S,) slots hold id 0
        image_embed_mask = torch.zeros(seq_len, dtype=torch.long)
        image_embed_mask[1:L + 3] = 1
        vision_expert_mask = torch.zeros(seq_len, dtype=torch.long)
        vision_expert_mask[1:L + 2] = 1
        image_rope_mask = torch.zeros(seq_len, dtype=torch.long)
        image_rope_mask[2:L + 2] = 1
        position_ids = position_ids_from_rope_mask(image_rope_mask)[0]  # (S,) image slots share one id
        height, width = args.eva_args["image_size"]
        channels = int(args.eva_args.get("in_channels", 3))
        image = (torch.randn(1, channels, height, width, generator=gen) if gen is not None
                 else torch.empty(1, channels, height, width, device=image_device))  # (1, 3, H, W)
        return {
            "input_ids": input_ids.unsqueeze(0),  # (1, S)
            "position_ids": position_ids.unsqueeze(0),  # (1, S)
            "attention_mask": torch.ones(1, 1, seq_len, seq_len).tril_(),  # (1, 1, S, S) causal
            "image_embed_mask": image_embed_mask.unsqueeze(0),
            "vision_expert_mask": vision_expert_mask.unsqueeze(0),
            "image_rope_mask": image_rope_mask.unsqueeze(0),
            "vision_image": image,
            "vision_input_ids": torch.zeros(1, 1, dtype=torch.long),
            "vision_position_ids": None,
            "vision_attention_mask": torch.ones(1, 1, dtype=torch.long),
        }

    def prompt_inputs(self, config: ModelConfig, query: str, *, image: Any = None, version: str = "base",
                      max_length: int = 4096, with_image: bool = True) -> dict[str, Any]:
        """A real context forward's keyword arguments, made the way ``chat()`` makes them: the
        query through the text processor, the picture (default: the shipped sample) through the
        image processor. ``with_image=False`` gives a text-only prompt (no image slots)."""
        from . import SAMPLE_IMAGE
        from .image_processor import get_image_processor, open_image
        from .tokenizer import tokenizer_for_config

        tokenizer = tokenizer_for_config(config.values, None, version)
        processor = TextProcessor(tokenizer, max_length, int(config.values["image_length"]))
        if with_image:
            inputs = processor(processor.history_to_prompt(query))
        else:  # no image slots: neither the vision tower nor the vision experts run
            ids = [tokenizer.bos_token_id, *tokenizer.encode(query)]
            zeros = torch.zeros(1, len(ids), dtype=torch.long)
            inputs = {"input_ids": torch.tensor([ids]), "image_embed_mask": zeros, "vision_expert_mask": zeros,
                      "image_rope_mask": zeros}
        input_ids = inputs.pop("input_ids")
        _, mask, positions = masks_and_position_ids(input_ids[0], inputs["image_rope_mask"])
        kwargs: dict[str, Any] = {"input_ids": input_ids, "position_ids": positions, "attention_mask": mask,
                                  **inputs}
        if with_image:
            picture = open_image(SAMPLE_IMAGE) if image is None else image
            processed = get_image_processor(config.eva["image_size"])(picture)
            kwargs.update({f"vision_{k}": v for k, v in processed.items()})
        return kwargs

    def chat_options(self, config: ModelConfig) -> dict[str, Any]:
        """Extra keyword arguments of :func:`tracer.cogvlm.chat.chat` for this model (CogAgent adds
        its cross image processor); CogVLM needs none."""
        return {}

    # -- what one hook dispatch means -----------------------------------------------------
    def dispatch_facts(self, hook: str, kwargs: Mapping[str, Any], weights: Sequence[str],
                       cache: dict[int, Any]) -> dict[str, Any] | None:
        """``{"branch": ...}``: whether the hook used vision-expert weights and how many tokens
        ``vision_expert_mask`` routes to the vision and language experts. ``cache`` lives for
        one model forward (SAT hands the same mask to every layer)."""
        mask = kwargs.get(EXPERT_MASK)
        if not isinstance(mask, torch.Tensor) or not weights:  # attention_fn gets the mask but uses no weights
            return None
        expert = any(part.startswith("vision_") for w in weights for part in w.split("."))
        branch: dict[str, Any] = {"vision_expert": expert, "vision_tokens": None, "language_tokens": None}
        if mask.device.type != "meta":
            counts = cache.get(id(mask))
            if counts is None:
                vision = int(mask.bool().sum())
                counts = cache[id(mask)] = (vision, mask.numel() - vision)
            branch["vision_tokens"], branch["language_tokens"] = counts
        return {"branch": branch}

    def forward_facts(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        """``{"token_layout": ...}`` from a context forward's own inputs — whoever made them
        (our text processor or upstream's ``chat()``). Text pieces show as token ids: the
        tokenizer is not part of a forward; ``cogtrace report`` records the real pieces."""
        ids = kwargs.get("input_ids", args[0] if args else None)  # SAT's forward(input_ids, position_ids, ...)
        masks = {k: kwargs.get(k) for k in ("image_embed_mask", "vision_expert_mask", "image_rope_mask")}
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] < 2 or ids.device.type == "meta":
            return None  # a decode step (one token) or a shapes-only run
        if not all(isinstance(m, torch.Tensor) and m.shape == ids.shape for m in masks.values()):
            return None
        pieces = [f"#{int(i)}" for i in ids[0].tolist()]
        return {"token_layout": self.token_layout(ids, masks, pieces)}

    # -- the token layout -----------------------------------------------------------------
    def token_layout(self, input_ids: Sequence[int] | torch.Tensor, masks: Mapping[str, Any],
                     pieces: Sequence[str]) -> dict[str, list[Any]]:
        """``meta['token_layout']`` (format in :mod:`tracer.cogvlm.views`) from the ids and the
        three masks a text processor made — ours or upstream's — and the tokenizer's pieces."""
        def ints(values: Any) -> list[int]:
            flat = values[0] if isinstance(values, torch.Tensor) and values.dim() == 2 else values
            return [int(v) for v in (flat.tolist() if isinstance(flat, torch.Tensor) else flat)]

        ids = ints(input_ids)
        embed, expert, rope = (ints(masks[k]) for k in ("image_embed_mask", "vision_expert_mask", "image_rope_mask"))
        shown = list(pieces)
        for i in range(len(ids)):  # the slots the vision tower fills have no text of their own
            if rope[i]:
                shown[i] = "<image>"
            elif embed[i]:
                shown[i] = "<boi>" if expert[i] else "<eoi>"
        positions = [int(p) for p in position_ids_from_rope_mask(rope)[0].tolist()]
        return {"tokens": ids, "pieces": shown, "image_embed_mask": embed, "vision_expert_mask": expert,
                "image_rope_mask": rope, "position_ids": positions}

    def prompt_layout(self, text_processor: TextProcessor, prompt: str) -> dict[str, list[Any]]:
        """:meth:`token_layout` of one prompt through our text processor."""
        inputs = text_processor(prompt)
        ids = inputs["input_ids"]
        return self.token_layout(ids, inputs, text_processor.tokenizer.pieces([int(i) for i in ids[0].tolist()]))


ADAPTER = CogVLMAdapter()
