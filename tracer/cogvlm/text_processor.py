"""From a user's question to the token ids, masks and position ids CogVLM consumes.

This is the behaviour of upstream's ``llama2_text_processor_inference`` (``utils/utils/
language.py`` in THUDM/CogVLM), written afresh with the layout spelled out. For one image
of ``L`` tokens (the usual case: every template starts with the image) a prompt becomes::

    index               0      1      2 ... L+1       L+2    L+3 ...
    token               [BOS]  [boi]  L image slots   [eoi]  text of the prompt
    input_ids           1      0      0 ... 0         0      encode(text)
    image_embed_mask    0      1      1 ... 1         1      0 ...   (L+2: filled by the vision tower)
    vision_expert_mask  0      1      1 ... 1         0      0 ...   (L+1: vision-expert weights)
    image_rope_mask     0      0      1 ... 1         0      0 ...   (L: one shared rotary position)
    position_ids        0      1      2 ... 2         3      4, 5, ...

``<EOI>`` in a prompt marks where an image goes (every template starts with it). The
image slots hold id 0 (``<unk>``); :class:`~tracer.cogvlm.mixins.ImageMixin` overwrites
their embeddings. Position ids are computed by :meth:`TextProcessor.get_func`, which SAT's
``filling_sequence`` calls on the whole padded sequence, so generated tokens continue the
count after the prompt.

Templates (``signal_type`` / ``--version``), with ``history`` of ``(query, response)`` pairs:

* ``base``: ``<EOI>{query}`` — plain completion; history ignored (the grounding and base
  checkpoints use it).
* ``chat``: ``<EOI> [INST] {q1} [/INST] {r1} [INST] {query} [/INST] `` (CogAgent, newer chat).
* ``vqa``: ``<EOI>Question: {query} Short answer:`` — single turn, history ignored.
* ``chat_old``: ``<EOI>Question: {q1} Answer: {r1}\\nQuestion: {query} Answer:`` (cogvlm-chat-v1.1).

Grounding prompts: upstream's ``utils/utils/template.py`` lists the phrasings the grounding
checkpoint was trained on — ``caption2box`` (``<expr>`` → boxes), ``box2caption`` (``<objs>``
→ description), ``caption_with_box`` (description with a box after each object) and
``box_qa_True`` / ``box_qa_False`` (``<question>`` with or without reasoning) — used with the
``base`` template. :data:`GROUNDING_PROMPTS` has one phrasing of our own for the first three.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from ..errors import UserError
from .tokenizer import Tokenizer, check_version

__all__ = [
    "GROUNDING_PROMPTS",
    "IMAGE_MARK",
    "SEPARATORS",
    "TextProcessor",
    "grounding_prompt",
    "history_to_prompt",
    "masks_and_position_ids",
    "position_ids_from_rope_mask",
]

IMAGE_MARK = "<EOI>"
History = Sequence[tuple[str, str]]

# What precedes the answer in the decoded text; chat() keeps what follows the last one.
# base has no answer marker: the image slots decode as <unk>, so the text after the last
# <unk> (the prompt's text plus the continuation) is the answer.
SEPARATORS: dict[str, str] = {"chat": "[/INST]", "vqa": " Short answer:", "chat_old": " Answer:", "base": "<unk>"}

# Our own wording for upstream's three grounding modes (see the module docstring).
GROUNDING_PROMPTS: dict[str, str] = {
    "caption_with_box": "Describe the image and give the box [[x0,y0,x1,y1]] of every object you mention.",
    "caption2box": "Where is {expr} in the image? Give its bounding box as [[x0,y0,x1,y1]].",
    "box2caption": "What is inside the region {objs} of the image?",
}

_TAGS = re.compile(r"<pad>|<s>|</s>|<EOI>")


def grounding_prompt(mode: str, **fields: str) -> str:
    """``grounding_prompt('caption2box', expr='the red square')``."""
    if mode not in GROUNDING_PROMPTS:
        raise ValueError(f"unknown grounding mode {mode!r}: expected one of {list(GROUNDING_PROMPTS)}")
    return GROUNDING_PROMPTS[mode].format(**fields)


# ---------------------------------------------------------------------------------------------
# Prompt templates


def history_to_prompt(version: str, query: str, history: History = ()) -> str:
    """The prompt string for ``query`` after ``history`` in template ``version``."""
    check_version(version)
    if version == "base":
        return IMAGE_MARK + query
    if version == "vqa":  # upstream supports a single round only
        return f"{IMAGE_MARK}Question: {query} Short answer:"
    if version == "chat":
        turns = "".join(f"{q} [/INST] {r} [INST] " for q, r in history)
        return f"{IMAGE_MARK} [INST] {turns}{query} [/INST] "
    turns = "".join(f"{q} Answer: {r}\nQuestion: " for q, r in history)  # chat_old
    return f"{IMAGE_MARK}Question: {turns}{query} Answer:"


# ---------------------------------------------------------------------------------------------
# Position ids and the function SAT's filling_sequence calls


def position_ids_from_rope_mask(image_rope_mask: Sequence[int] | torch.Tensor, total_length: int | None = None
                                ) -> torch.Tensor:
    """Position ids in which each run of image tokens shares one id.

    A position gets a new id when it is text (mask 0) or when the mask changes (the first
    image token); the other image tokens repeat it. Positions past the mask (tokens still
    to be generated) keep counting. Returns (1, total_length) long.
    """
    mask = torch.as_tensor(image_rope_mask, dtype=torch.long).flatten()  # (C,)
    total = len(mask) if total_length is None else total_length
    if total < len(mask):
        raise ValueError(f"total_length {total} is shorter than the mask ({len(mask)})")
    step = (mask == 0).long()  # (C,) text positions advance
    step[1:] |= (mask[1:] != mask[:-1]).long()  # so does the first of each image run
    ids = torch.cumsum(step, 0) - 1  # (C,)
    last = int(ids[-1]) if len(ids) else -1
    tail = torch.arange(last + 1, last + 1 + total - len(mask), dtype=torch.long)  # (T-C,)
    return torch.cat([ids, tail]).unsqueeze(0)  # (1, T)


def masks_and_position_ids(seq: torch.Tensor, image_rope_mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAT's ``get_masks_and_position_ids`` contract for CogVLM: ``seq`` (T,) is the padded
    sequence (-1 = to generate); returns tokens (1, T), a causal mask (1, 1, T, T) and
    position ids (1, T) in which the image tokens share one id."""
    tokens = seq.unsqueeze(0)  # (1, T)
    length = len(seq)
    attention_mask = torch.ones((1, 1, length, length), device=seq.device).tril_()  # (1, 1, T, T)
    position_ids = position_ids_from_rope_mask(image_rope_mask.cpu(), length).to(seq.device)  # (1, T)
    return tokens, attention_mask, position_ids


# ---------------------------------------------------------------------------------------------
# The processor


class TextProcessor:
    """Upstream's ``llama2_text_processor_inference``: same call, same outputs, same attributes.

    ``processor(prompt)`` returns ``input_ids``, ``image_embed_mask``, ``vision_expert_mask``,
    ``image_rope_mask``, each (1, S) long. ``sep`` follows the tokenizer's ``signal_type``.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int = 1024, image_length: int = 257) -> None:
        if image_length <= 0:
            raise ValueError(f"image_length {image_length}: expected a positive integer")
        self.tokenizer = tokenizer
        self.max_target_length = max_length
        self.image_length = image_length
        self.sep = SEPARATORS[tokenizer.signal_type]
        # Ids the sampler must never pick: any the model has beyond the tokenizer's vocabulary
        # (none when the sizes agree, as in every shipped config), which could not be decoded.
        self.invalid_slices: list[slice] = [slice(tokenizer.vocab_size, None)]

    @property
    def version(self) -> str:
        return self.tokenizer.signal_type

    def history_to_prompt(self, query: str, history: History = ()) -> str:
        return history_to_prompt(self.version, query, history)

    @staticmethod
    def replace_tags_with_empty(text: str) -> str:
        """Remove ``<pad>``, ``<s>``, ``</s>`` and ``<EOI>``: a query must not add special tags or
        a second image slot (the model gets one image)."""
        return _TAGS.sub("", text)

    def clean_query(self, query: str, empty: str = "empty query: expected a question about the image") -> str:
        """``query`` without special tags (see :meth:`replace_tags_with_empty`); a ``UserError``
        saying ``empty`` when nothing is left."""
        query = self.replace_tags_with_empty(query)
        if not query.strip():
            raise UserError(empty)
        return query

    def check_room(self, context_length: int, max_length: int) -> None:
        """A ``UserError`` unless a prompt of ``context_length`` tokens leaves room for an answer."""
        if max_length - context_length <= 1:
            raise UserError(f"the prompt is {context_length} tokens ({self.image_length} of them image slots) "
                            f"and --max-length is {max_length}: expected --max-length of at least "
                            f"{context_length + 2}")

    def token_ids(self, prompt: str) -> tuple[list[int], list[int]]:
        """Token ids with image slots expanded, and the index of each image's ``eoi`` slot."""
        L = self.image_length
        if IMAGE_MARK not in prompt:  # a bare query: apply the template, no history
            prompt = self.history_to_prompt(self.replace_tags_with_empty(prompt))
        first, *after_images = prompt.split(IMAGE_MARK)
        ids = [self.tokenizer.bos_token_id, *self.tokenizer.encode(first, add_special_tokens=False)]
        eoi_positions: list[int] = []
        for text in after_images:
            # boi + L image slots + eoi, all id 0 (<unk>); the vision tower fills them.
            ids += [0] * (L + 2)
            eoi_positions.append(len(ids) - 1)
            ids += self.tokenizer.encode(text, add_special_tokens=False)
        return ids, eoi_positions

    def __call__(self, prompt: str = "") -> dict[str, torch.Tensor]:
        ids, eoi_positions = self.token_ids(prompt)
        L = self.image_length
        image_embed_mask = [0] * len(ids)
        vision_expert_mask = [0] * len(ids)
        image_rope_mask = [0] * len(ids)
        for eoi in eoi_positions:
            image_embed_mask[eoi - L - 1: eoi + 1] = [1] * (L + 2)  # boi, image, eoi
            vision_expert_mask[eoi - L - 1: eoi] = [1] * (L + 1)  # boi, image
            image_rope_mask[eoi - L: eoi] = [1] * L  # image
        return {
            "input_ids": torch.tensor(ids).unsqueeze(0),  # (1, S)
            "image_embed_mask": torch.tensor(image_embed_mask).unsqueeze(0),  # (1, S)
            "vision_expert_mask": torch.tensor(vision_expert_mask).unsqueeze(0),  # (1, S)
            "image_rope_mask": torch.tensor(image_rope_mask).unsqueeze(0),  # (1, S)
        }

    def process_response(self, response: str) -> str:
        return response.replace("</s>", "")

    def get_func(self, inputs: torch.Tensor, **kwargs: Any
                 ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The ``get_masks_and_position_ids`` to hand SAT's ``filling_sequence``.

        Called as upstream does, ``get_func(input_ids, **processor_outputs)``; only
        ``image_rope_mask`` matters (the causal mask and positions follow from it).
        """
        return partial(masks_and_position_ids, image_rope_mask=kwargs["image_rope_mask"])
