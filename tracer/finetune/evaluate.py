"""Score a model's greedy answers on held-out synthetic scenes: exact words, and box IoU.

Each question goes through the real inference path, ``tracer.cogvlm.chat.chat`` with top-k 1
(greedy), exactly as ``cogtrace chat`` answers it. A box answer counts when its first box
overlaps the true box with IoU > 0.5 (the usual grounding criterion); a word answer when it
equals the expected word.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from torch import nn

from ..cogvlm.grounding import parse_grounding
from ..cogvlm.image_processor import ImageProcessor
from ..cogvlm.text_processor import TextProcessor
from .data import Item

__all__ = ["Question", "Score", "evaluate", "iou", "item_questions", "kind_of"]

IOU_HIT = 0.5
ANSWER_TOKENS = 24  # longest synthetic answer ("the yellow triangle [[...]]</s>") is 22 tokens


@dataclass(frozen=True)
class Question:
    image: Image.Image
    query: str
    answer: str
    kind: str
    truth_box: tuple[int, int, int, int] | None = None  # 000-999, for kind 'box'


@dataclass
class Score:
    """Per kind: questions asked, answers right; for boxes also every IoU."""

    asked: dict[str, int] = field(default_factory=dict)
    right: dict[str, int] = field(default_factory=dict)
    ious: list[float] = field(default_factory=list)
    answers: list[tuple[str, str, str]] = field(default_factory=list)  # (query, expected, got)

    def accuracy(self, *kinds: str) -> float:
        asked = sum(self.asked.get(k, 0) for k in kinds)
        return sum(self.right.get(k, 0) for k in kinds) / asked if asked else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"asked": dict(self.asked), "right": dict(self.right),
                "mean_iou": sum(self.ious) / len(self.ious) if self.ious else 0.0,
                **{f"acc_{k}": self.accuracy(k) for k in sorted(self.asked)}}


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes with inclusive corners."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / area if area > 0 else 0.0


_PREFIXES = (("What colour", "colour"), ("What shape", "shape"), ("How many", "count"),
             ("Is the", "position"), ("Where is", "box"))


def kind_of(query: str) -> str:
    return next((kind for prefix, kind in _PREFIXES if query.startswith(prefix)), "other")


def item_questions(item: Item, kinds: Iterable[str] | None = None) -> list[Question]:
    """The questions of one labelled image on disk (``data.write_dataset``'s layout)."""
    wanted = set(kinds) if kinds is not None else None
    image = Image.open(item.image).convert("RGB")
    out = []
    for query, answer in item.turns:
        kind = kind_of(query)
        if wanted is not None and kind not in wanted:
            continue
        truth = None
        if kind == "box":
            boxes = parse_grounding(answer).boxes
            truth = (boxes[0].x0, boxes[0].y0, boxes[0].x1, boxes[0].y1) if boxes else None
        out.append(Question(image, query, answer, kind, truth))
    return out


def evaluate(model: nn.Module, text_processor: TextProcessor, image_processor: ImageProcessor,
             questions: Iterable[Question]) -> Score:
    """Greedy answers through ``chat()`` (the model needs its 'auto-regressive' mixin)."""
    from ..cogvlm.chat import SamplingOptions, chat

    score = Score()
    for q in questions:
        context = len(text_processor.token_ids(text_processor.history_to_prompt(q.query))[0])
        options = SamplingOptions(max_length=context + ANSWER_TOKENS, top_k=1, seed=1)
        got = chat(q.image, model, text_processor, image_processor, q.query, options=options).response
        score.asked[q.kind] = score.asked.get(q.kind, 0) + 1
        if q.kind == "box" and q.truth_box is not None:
            boxes = parse_grounding(got).boxes
            overlap = iou((boxes[0].x0, boxes[0].y0, boxes[0].x1, boxes[0].y1), q.truth_box) if boxes else 0.0
            score.ious.append(overlap)
            hit = overlap > IOU_HIT
        else:
            hit = got.strip().rstrip(".").lower() == q.answer.strip().lower()
        score.right[q.kind] = score.right.get(q.kind, 0) + int(hit)
        score.answers.append((q.query, q.answer, got))
    return score
