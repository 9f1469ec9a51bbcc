"""Training inputs: a prompt and its answer as the ids, masks, labels and positions CogVLM trains on.

Upstream's ``llama2_text_processor`` (``utils/utils/language.py``), written afresh on our
inference :class:`~tracer.cogvlm.text_processor.TextProcessor` so the prompt part is token for
token what ``chat()`` feeds at inference::

    input_ids  [BOS] [boi] L image slots [eoi] prompt text | answer </s> | <pad> ...
    labels     -100 ...                                    | answer </s> | -100 ...

Only the answer and its end-of-sequence token carry labels (the loss is the answer's); the
padding attends causally like everything else and is never a target. ``collate`` stacks samples
into one batch the way upstream's ``data_collator`` does (``vision_*`` keys for the image).
"""

from __future__ import annotations

from typing import Any

import torch

from ..cogvlm.image_processor import ImageProcessor
from ..cogvlm.text_processor import TextProcessor, position_ids_from_rope_mask
from ..errors import UserError

__all__ = ["IGNORE", "TrainingTextProcessor", "answer_loss", "collate"]

IGNORE = -100  # CrossEntropyLoss's ignore_index, as upstream


class TrainingTextProcessor:
    """``processor(answer, query)`` -> one sample's tensors, unpadded (``collate`` pads a batch to
    its longest sample, or to ``pad_to``); ``max_length`` bounds a sample, as upstream's."""

    def __init__(self, text_processor: TextProcessor, max_length: int) -> None:
        self.text = text_processor
        self.max_length = max_length

    def __call__(self, answer: str, query: str) -> dict[str, torch.Tensor]:
        tokenizer = self.text.tokenizer
        context = self.text(self.text.history_to_prompt(self.text.replace_tags_with_empty(query)))
        prompt_ids = context["input_ids"][0].tolist()
        answer_ids = [*tokenizer.encode(answer, add_special_tokens=False), tokenizer.eos_token_id]
        length = len(prompt_ids) + len(answer_ids)
        if length > self.max_length:
            raise UserError(f"a sample of {length} tokens (query {query[:40]!r}) does not fit --max-length "
                            f"{self.max_length}: expected a larger --max-length or a shorter text")
        tail = torch.zeros(len(answer_ids), dtype=torch.long)
        return {
            "input_ids": torch.tensor(prompt_ids + answer_ids).unsqueeze(0),  # (1, S)
            "labels": torch.tensor([IGNORE] * len(prompt_ids) + answer_ids).unsqueeze(0),  # (1, S)
            **{key: torch.cat([context[key][0], tail]).unsqueeze(0)  # (1, S) each
               for key in ("image_embed_mask", "vision_expert_mask", "image_rope_mask")},
            "context_length": torch.tensor([len(prompt_ids)]),  # (1,)
        }


_PAD_VALUES = {"labels": IGNORE, "image_embed_mask": 0, "vision_expert_mask": 0, "image_rope_mask": 0}


def collate(samples: list[dict[str, Any]], pad_id: int, image_processor: ImageProcessor | None = None,
            pad_to: int | None = None) -> dict[str, Any]:
    """Stack samples (each with an ``image`` PIL picture or a ``vision`` dict) into one batch.

    Samples are padded at their end to the longest (or ``pad_to``); position ids follow each
    sample's image run and keep counting through the padding. The attention mask is one causal
    (1, 1, S, S) matrix shared by the batch: with padding only at the end, causal is all a sample
    needs (upstream builds the same matrix per sample).
    """
    length = max(s["input_ids"].shape[1] for s in samples) if pad_to is None else pad_to
    batch: dict[str, Any] = {}
    for key in ("input_ids", *_PAD_VALUES):
        value = pad_id if key == "input_ids" else _PAD_VALUES[key]
        batch[key] = torch.cat([torch.nn.functional.pad(s[key], (0, length - s[key].shape[1]), value=value)
                                for s in samples])  # (B, S)
    batch["position_ids"] = torch.cat([position_ids_from_rope_mask(m, length) for m in batch["image_rope_mask"]])
    batch["context_length"] = torch.cat([s["context_length"] for s in samples])  # (B,)
    visions = [s["vision"] if "vision" in s else image_processor(s["image"])  # type: ignore[misc]
               for s in samples]
    batch["vision_image"] = torch.cat([v["image"] for v in visions])  # (B, 3, H, W)
    batch["vision_input_ids"] = torch.cat([v["input_ids"] for v in visions])  # (B, 1)
    batch["vision_position_ids"] = None
    batch["vision_attention_mask"] = torch.cat([v["attention_mask"] for v in visions])  # (B, 1)
    batch["attention_mask"] = torch.ones(1, 1, length, length).tril_()  # (1, 1, S, S)
    return batch


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Upstream's ``forward_step`` loss: next-token cross entropy on the labelled (answer) tokens."""
    shift_labels = labels[..., 1:].contiguous()  # (B, S-1)
    shift_logits = logits.float()[..., :-1, :].contiguous()  # (B, S-1, V)
    return torch.nn.functional.cross_entropy(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1),
                                             ignore_index=IGNORE)
