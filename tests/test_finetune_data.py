"""The synthetic grounding data: deterministic, held out, in the SFT-311K layout, boxes that match
the pixels; and the training text processor's labels (answer only)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from tracer.cogvlm.config import load_config
from tracer.cogvlm.grounding import parse_grounding
from tracer.cogvlm.image_processor import get_image_processor
from tracer.cogvlm.text_processor import TextProcessor
from tracer.cogvlm.tokenizer import tokenizer_for_config
from tracer.finetune.data import COLOURS, SIZE, load_split, samples, write_dataset
from tracer.finetune.evaluate import iou, kind_of
from tracer.finetune.text import IGNORE, TrainingTextProcessor, collate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_valid_is_held_out(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", train=4, valid=3, seed=7, max_objects=3)
    b = write_dataset(tmp_path / "b", train=4, valid=3, seed=7, max_objects=3)
    assert _files(a) == _files(b)
    assert sorted(p.name for p in (a / "train" / "images").iterdir()) == [f"{i:08d}.jpg" for i in range(4)]
    train = {json.dumps(json.loads(p.read_text())["objects"]) for p in (a / "train" / "labels").iterdir()}
    valid = {json.dumps(json.loads(p.read_text())["objects"]) for p in (a / "valid" / "labels").iterdir()}
    assert not train & valid
    other = write_dataset(tmp_path / "c", train=4, valid=0, seed=8, max_objects=3)
    assert _files(other) != {k: v for k, v in _files(a).items() if k.startswith("train")}


def test_labels_are_conversations_with_grounding_answers(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, train=6, valid=0, seed=3, max_objects=3)
    items = load_split(root / "train")
    kinds = {kind_of(q) for item in items for q, _ in item.turns}
    assert kinds == {"colour", "shape", "count", "position", "box"}
    for item in items:
        for query, answer in item.turns:
            if kind_of(query) == "box":
                assert re.fullmatch(r"the \w+ \w+ \[\[\d{3},\d{3},\d{3},\d{3}\]\]", answer)
                box = parse_grounding(answer).boxes[0]
                truth = next(o for o in item.objects if answer.startswith(f"the {o['colour']} {o['shape']}"))
                assert [box.x0, box.y0, box.x1, box.y1] == truth["box"]


def test_boxes_match_the_drawn_pixels() -> None:
    for sample in itertools.islice(samples(5, "valid", 3), 20):
        pixels = sample.image.load()
        for obj in sample.scene.objects:
            x0, y0, x1, y1 = obj.box
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 + (y1 - y0) // 4  # inside circles, squares, triangles
            got = pixels[cx, cy]
            assert sum(abs(g - w) for g, w in zip(got, COLOURS[obj.colour], strict=True)) < 60, (obj, got)
            outside = (x0 - 3, y0 - 3)
            if min(outside) >= 0:
                assert sum(abs(g - w) for g, w in zip(pixels[outside], COLOURS[obj.colour], strict=True)) > 60
            grounding = obj.grounding_box()
            assert iou(grounding, (round(x0 * 1000 / SIZE), round(y0 * 1000 / SIZE),
                                   round(x1 * 1000 / SIZE), round(y1 * 1000 / SIZE))) > 0.99


def test_training_labels_cover_the_answer_only() -> None:
    config = load_config("tiny/cogvlm-grounding-trained")
    tokenizer = tokenizer_for_config(config.values, None, "vqa")
    text = TextProcessor(tokenizer, 512, int(config.values["image_length"]))
    processor = TrainingTextProcessor(text, 256)
    sample = processor("the red circle [[100,200,300,400]]", "Where is the red circle?")
    ids, labels = sample["input_ids"][0].tolist(), sample["labels"][0].tolist()
    context = int(sample["context_length"][0])
    inference = text(text.history_to_prompt("Where is the red circle?"))
    assert ids[:context] == inference["input_ids"][0].tolist()  # the prompt is what chat() feeds
    assert labels[:context] == [IGNORE] * context
    assert labels[context:] == ids[context:] and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[context:-1]) == "the red circle [[100,200,300,400]]"
    short = processor("red", "What colour is the circle?")
    image = get_image_processor(config.eva["image_size"])
    picture = next(samples(1, "valid")).image
    batch = collate([{**sample, "image": picture}, {**short, "image": picture}], tokenizer.pad_token_id, image)
    assert batch["vision_image"].shape == (2, 3, 112, 112)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(ids))
    assert batch["labels"][1, short["input_ids"].shape[1]:].eq(IGNORE).all()
    assert batch["position_ids"][0].tolist()[:context] == inference_positions(inference["image_rope_mask"], context)


def inference_positions(rope_mask: object, length: int) -> list[int]:
    from tracer.cogvlm.text_processor import position_ids_from_rope_mask

    return position_ids_from_rope_mask(rope_mask, length)[0].tolist()  # type: ignore[arg-type]
