"""The shipped trained tiny checkpoint, scored on held-out synthetic scenes with greedy answers
through ``chat()`` (the 'valid' stream: never trained on). Deterministic, CPU, seconds.

Measured on 40 + 40 held-out questions (single-object scenes): colour 95.7 % (22 of 23), shape
100 % (17 of 17), boxes with IoU > 0.5 70 % (28 of 40), mean IoU 0.75. The issue's targets are
colour/shape >= 90 % and boxes >= 70 %: all are met, and this test holds the checkpoint to them (greedy
decoding is deterministic), far above chance (colour 1/6, shape 1/3), so a regression in the model,
the data or the inference path shows. See docs/finetune.md for the curriculum and its curve.
"""

from __future__ import annotations

import pytest
import torch

from tracer.cogvlm import SHAPES_IMAGE, SHAPES_QUERY
from tracer.cogvlm.chat import SamplingOptions, add_autoregressive_mixin, chat
from tracer.cogvlm.checkpoint import checkpoint_file, load_model, read_state_dict
from tracer.cogvlm.config import load_config
from tracer.cogvlm.grounding import parse_grounding
from tracer.cogvlm.image_processor import get_image_processor
from tracer.cogvlm.text_processor import TextProcessor
from tracer.cogvlm.tokenizer import tokenizer_for_config
from tracer.finetune.evaluate import Score, evaluate
from tracer.finetune.recipe import TRAINED_CONFIG, held_out_questions


@pytest.fixture(scope="module")
def parts() -> tuple[torch.nn.Module, TextProcessor, object]:
    torch.set_num_threads(1)
    model, _ = load_model(TRAINED_CONFIG)
    add_autoregressive_mixin(model)
    config = load_config(TRAINED_CONFIG)
    tokenizer = tokenizer_for_config(config.values, None, "vqa")
    return model, TextProcessor(tokenizer, 1 << 30, int(config.values["image_length"])), get_image_processor(
        config.eva["image_size"])


def _score(parts: tuple[torch.nn.Module, TextProcessor, object], kinds: tuple[str, ...]) -> Score:
    model, text, image = parts
    return evaluate(model, text, image, held_out_questions(40, max_objects=1, kinds=kinds, seed=99))  # type: ignore[arg-type]


def test_shipped_in_sat_layout_and_loads_with_weights_only() -> None:
    directory = load_config(TRAINED_CONFIG).directory
    weights = checkpoint_file(directory)
    assert weights.stat().st_size < 5_000_000  # a few MB in the repo
    assert len(read_state_dict(weights)) > 0  # torch.load(..., weights_only=True) inside


def test_colour_and_shape_questions(parts: tuple[torch.nn.Module, TextProcessor, object]) -> None:
    score = _score(parts, ("colour", "shape"))
    assert score.accuracy("colour") >= 0.9, score.answers
    assert score.accuracy("shape") >= 0.9, score.answers


def test_boxes_on_single_object_scenes(parts: tuple[torch.nn.Module, TextProcessor, object]) -> None:
    score = _score(parts, ("box",))
    assert all(parse_grounding(got).boxes for _, _, got in score.answers)  # always a well-formed box
    assert score.accuracy("box") >= 0.7, score.answers
    assert sum(score.ious) / len(score.ious) >= 0.7


def test_the_default_picture_gets_its_box(parts: tuple[torch.nn.Module, TextProcessor, object]) -> None:
    model, text, image = parts
    result = chat(SHAPES_IMAGE, model, text, image, SHAPES_QUERY,  # type: ignore[arg-type]
                  options=SamplingOptions(max_length=200, top_k=1))
    (phrase,) = parse_grounding(result.response).phrases
    assert phrase.phrase == "the purple circle" and len(phrase.boxes) == 1
