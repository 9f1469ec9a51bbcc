"""One chat turn with CogVLM: upstream's ``chat()`` (``utils/utils/chat.py``), on any device.

The flow, each step a call a learner can set a breakpoint on::

    prompt  = text_processor.history_to_prompt(query, history)       # template + history
    image   = image_processor(open_image(path))                      # (1, 3, H, W)
    inputs  = text_processor(prompt)                                 # ids + three masks, (1, C)
    seq     = cat(input_ids, [-1] * (max_length - C))                # -1 = to be generated
    strategy = BaseStrategy(temperature, top_k, top_p, end_tokens=[eos])
    get_func = text_processor.get_func(input_ids, **inputs)          # masks + position ids
    output  = filling_sequence(model, seq, strategy=strategy,        # one context forward,
                               get_masks_and_position_ids=get_func,  # then one token per step
                               vision_image=..., **masks)            # with cached keys/values
    response = decode(output).split(sep)[-1].strip()                 # strip the prompt
    history  = history + [(query, response)]

Differences from upstream, and why: inputs stay float32 unless the model is half precision
(upstream always casts to fp16/bf16, which a CPU cannot run); sampling uses a private seeded
RNG state so a seed gives the same answer without touching the caller's RNG;
a prompt that leaves no room to generate, an empty query or an unknown version raise
:class:`UserError` instead of returning a message or asserting; special tags (``<EOI>``,
``</s>`` ...) typed in a query are removed before templating. Grounding boxes are drawn
by the caller (:mod:`tracer.cogvlm.grounding`), not inside ``chat()``.

The model must carry SAT's ``CachedAutoregressiveMixin`` as ``'auto-regressive'``, as
``cli_demo.py`` adds it: :func:`add_autoregressive_mixin`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from sat.generation.autoregressive_sampling import filling_sequence, stream_filling_sequence
from sat.generation.sampling_strategies import BaseStrategy
from sat.model.mixins import CachedAutoregressiveMixin
from torch import nn

from ..errors import UserError
from .image_processor import ImageProcessor, open_image
from .text_processor import TextProcessor

__all__ = ["ChatResult", "SamplingOptions", "add_autoregressive_mixin", "chat", "stream_chat"]

History = list[tuple[str, str]]


@dataclass(frozen=True)
class SamplingOptions:
    """``BaseStrategy``'s knobs; the defaults are upstream ``cli_demo_sat.py``'s."""

    max_length: int = 2048
    top_p: float = 0.4
    top_k: int = 1
    temperature: float = 0.8
    seed: int | None = 1234
    # Answer tokens at most, on top of max_length (None: up to max_length). Upstream has none,
    # and an untrained tiny model then babbles until its 2048 slots are full.
    max_new_tokens: int | None = None

    def check(self) -> None:
        if self.max_length <= 1:
            raise UserError(f"--max-length {self.max_length}: expected an integer > 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens {self.max_new_tokens}: expected a positive integer")
        if not 0.0 <= self.top_p <= 1.0:
            raise UserError(f"--top-p {self.top_p}: expected a number between 0 and 1")
        if self.top_k < 0:
            raise UserError(f"--top-k {self.top_k}: expected an integer >= 0")
        if not self.temperature > 0.0:
            raise UserError(f"--temperature {self.temperature}: expected a number > 0")


@dataclass
class ChatResult:
    """What one turn produced; ``image`` can be passed back in for the next turn."""

    response: str
    history: History
    image: Image.Image
    prompt: str
    context_length: int  # tokens in the prompt, image slots included
    output_ids: list[int] = field(repr=False)  # prompt + generated ids
    seconds: float = 0.0

    @property
    def generated_ids(self) -> list[int]:
        return self.output_ids[self.context_length:]


def add_autoregressive_mixin(model: nn.Module) -> nn.Module:
    """``model.add_mixin('auto-regressive', CachedAutoregressiveMixin())`` unless already there."""
    if "auto-regressive" not in model.mixins:  # type: ignore[operator]
        model.add_mixin("auto-regressive", CachedAutoregressiveMixin())  # type: ignore[operator]
    return model


# ---------------------------------------------------------------------------------------------
# Preparing a turn (everything before filling_sequence)


@dataclass
class _Turn:
    query: str
    history: History
    prompt: str
    pil: Image.Image
    seq: torch.Tensor  # (max_length,) prompt ids then -1s
    context_length: int
    strategy: BaseStrategy
    get_func: Any
    inputs: dict[str, Any]


def _to_model(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Floats follow the model's dtype (upstream always casts to half); ints keep theirs."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point():
        value = value.to(dtype)
    return value.to(device)


def _prepare(image: str | Path | Image.Image, model: nn.Module, text_processor: TextProcessor,
             image_processor: ImageProcessor, query: str, history: Sequence[tuple[str, str]] | None,
             options: SamplingOptions, cross_image_processor: ImageProcessor | None = None) -> _Turn:
    options.check()
    if "auto-regressive" not in model.mixins:  # type: ignore[operator]
        raise ValueError("model has no 'auto-regressive' mixin: call add_autoregressive_mixin(model) first "
                         "(cli_demo.py adds SAT's CachedAutoregressiveMixin the same way)")
    # Upstream builds the prompt from the raw query; a typed "<EOI>" (or one a tiny random
    # model wrote into an earlier answer) would open a second image slot that no image fills,
    # a shape error deep in the model. We drop such tags.
    clean = text_processor.replace_tags_with_empty
    history = [(clean(q), clean(r)) for q, r in history or []]
    query = text_processor.clean_query(query)
    prompt = text_processor.history_to_prompt(query, history)
    pil = image if isinstance(image, Image.Image) else open_image(image)

    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    vision = {f"vision_{k}": _to_model(v, device, dtype) for k, v in image_processor(pil).items()}
    if cross_image_processor is not None:  # CogAgent: the same picture again, at high resolution
        vision.update({f"cross_{k}": _to_model(v, device, dtype) for k, v in cross_image_processor(pil).items()})
    inputs = {k: _to_model(v, device, dtype) for k, v in text_processor(prompt).items()}
    input_ids = inputs.pop("input_ids")[0]  # (C,)
    context_length = len(input_ids)
    text_processor.check_room(context_length, options.max_length)
    length = options.max_length
    if options.max_new_tokens is not None:
        length = min(length, context_length + options.max_new_tokens)
    padding = torch.full((length - context_length,), -1, dtype=input_ids.dtype, device=device)
    seq = torch.cat([input_ids, padding])  # (max_length,)
    strategy = BaseStrategy(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k,
                            end_tokens=[text_processor.tokenizer.eos_token_id],
                            invalid_slices=list(text_processor.invalid_slices))
    get_func = text_processor.get_func(input_ids, **inputs)
    return _Turn(query, history, prompt, pil, seq, context_length, strategy, get_func, {**vision, **inputs})


# U+FFFD marks a byte-fallback piece decoded without the rest of its character; control
# characters other than newline and tab (a lone <0x0B> piece) would move the terminal's cursor.
_UNPRINTABLE = dict.fromkeys([0xFFFD, *(c for c in range(32) if chr(c) not in "\n\t"), 0x7F])


def clean_response(text: str, sep: str) -> str:
    """The answer as a person reads it: after the template's separator, without ``</s>``, lone
    byte-fallback marks or control characters."""
    return text.replace("</s>", "").split(sep)[-1].translate(_UNPRINTABLE).strip()


def _finish(turn: _Turn, output_ids: list[int], text_processor: TextProcessor, started: float) -> ChatResult:
    # Only the generated ids: decoding the whole sequence and splitting at the separator (as
    # upstream does) repeats the prompt whenever the separator does not survive decoding.
    response = text_processor.tokenizer.decode(output_ids[turn.context_length:])
    response = clean_response(text_processor.process_response(response), text_processor.sep)
    return ChatResult(response=response, history=[*turn.history, (turn.query, response)], image=turn.pil,
                      prompt=turn.prompt, context_length=turn.context_length, output_ids=output_ids,
                      seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# Running a turn


class _SamplingScope:
    """No autograd and a private, seeded CPU RNG while generation code runs.

    ``BaseStrategy`` samples with ``torch.multinomial`` on the global generator. We swap our
    own state in for each stretch of generation and the caller's back out afterwards, so a
    seed gives the same answer and the caller's RNG is untouched — also across the
    ``yield``s of :func:`stream_chat`, where the caller's code runs between two steps.
    """

    def __init__(self, seed: int | None) -> None:
        self.state = None if seed is None else torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with torch.no_grad():
            if self.state is None:  # unseeded: sample from the global generator as it is
                yield
                return
            saved = torch.get_rng_state()
            torch.set_rng_state(self.state)
            try:
                yield
            finally:
                self.state = torch.get_rng_state()
                torch.set_rng_state(saved)


def chat(image: str | Path | Image.Image, model: nn.Module, text_processor: TextProcessor,
         image_processor: ImageProcessor, query: str, history: Sequence[tuple[str, str]] | None = None,
         options: SamplingOptions = SamplingOptions(),
         cross_image_processor: ImageProcessor | None = None) -> ChatResult:
    """Answer ``query`` about ``image`` (a path or an already opened image) after ``history``.
    ``cross_image_processor`` (CogAgent) adds the high-resolution copy as ``cross_*`` inputs."""
    started = time.perf_counter()
    turn = _prepare(image, model, text_processor, image_processor, query, history, options, cross_image_processor)
    with _SamplingScope(options.seed).active():
        output = filling_sequence(model, turn.seq, batch_size=1, strategy=turn.strategy,
                                  get_masks_and_position_ids=turn.get_func, **turn.inputs)[0]  # (1, C+n)
    return _finish(turn, output[0].tolist(), text_processor, started)


def stream_chat(image: str | Path | Image.Image, model: nn.Module, text_processor: TextProcessor,
                image_processor: ImageProcessor, query: str, history: Sequence[tuple[str, str]] | None = None,
                options: SamplingOptions = SamplingOptions(),
                cross_image_processor: ImageProcessor | None = None) -> Generator[str, None, ChatResult]:
    """Like :func:`chat`, through SAT's ``stream_filling_sequence``: yields the answer's text as
    it grows and returns the :class:`ChatResult` (``result = yield from stream_chat(...)``).

    As upstream, a piece is held back while the text ends in U+FFFD, the mark of a character
    whose UTF-8 bytes have not all been generated yet. Bad input raises here, at the call,
    not at the first ``next()``.
    """
    started = time.perf_counter()
    turn = _prepare(image, model, text_processor, image_processor, query, history, options, cross_image_processor)
    return _stream(turn, model, text_processor, options, started)


def _stream(turn: _Turn, model: nn.Module, text_processor: TextProcessor, options: SamplingOptions,
            started: float) -> Generator[str, None, ChatResult]:
    decode = text_processor.tokenizer.decode
    offset = len(decode(turn.seq[:turn.context_length].tolist()))
    tokens: torch.Tensor = turn.seq[:turn.context_length].unsqueeze(0)  # (1, C)
    mems = None
    answered = False
    scope = _SamplingScope(options.seed)
    steps = stream_filling_sequence(model, turn.seq, batch_size=1, strategy=turn.strategy,
                                    get_masks_and_position_ids=turn.get_func, **turn.inputs)
    while True:
        with scope.active():  # the step itself runs here, not while the caller holds the piece
            step = next(steps, None)
        if step is None:
            break
        tokens, mems = step  # tokens: (1, C+n) after step n
        text = decode(tokens[0].tolist())
        if text and not text.endswith("\ufffd"):
            piece = text_processor.process_response(text[offset:]).translate(_UNPRINTABLE)
            offset = len(text)
            if not answered:  # the final response is stripped; so is the stream's start
                piece = piece.lstrip()
            if piece:
                answered = True
                yield piece
    output = turn.strategy.finalize(tokens, mems)[0]  # (1, C+n); also resets the strategy
    return _finish(turn, output[0].tolist(), text_processor, started)
