"""Synthetic grounding data in upstream's fine-tuning layout, deterministic from a seed.

Scenes are coloured shapes (circle, square, triangle) on a light background. Each scene comes
with questions about colour, shape, count, position (left/right) and the box of an object, the
box answered in CogVLM's grounding format: ``the red circle [[x0,y0,x1,y1]]``, corners relative
to the image times 1000 as three digits (000-999), origin top-left.

On disk a split is laid out as CogVLM-SFT-311K (upstream's ``dataset.md``)::

    DIR/train/images/00000000.jpg   DIR/train/labels/00000000.json
    DIR/valid/images/00000000.jpg   DIR/valid/labels/00000000.json

and a label is ``{"conversations": [{"role": "user", "content": Q}, {"role": "assistant",
"content": A}, ...], "objects": [...]}``; ``objects`` (our addition, ignored by upstream) holds
the ground truth that evaluation scores boxes against. The held-out split ``valid`` is drawn
from its own random stream (``seed`` and split name), never from the training one.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..cogvlm.text_processor import grounding_prompt
from ..errors import UserError
from ..files import write_atomic

__all__ = ["COLOURS", "SHAPES", "DataError", "Sample", "Scene", "ShapeObject", "load_split", "make_scene",
           "questions", "render", "samples", "write_dataset"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
    "yellow": (240, 210, 20), "purple": (140, 40, 170), "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
COUNT_WORDS = ("zero", "one", "two", "three")
SIZE = 224  # pixels of a stored picture; the image processor resizes to the model's geometry
SCALE = 1000  # grounding coordinates: fraction of the image times 1000, 000-999
SPLITS = ("train", "valid")


class DataError(UserError):
    """A data folder that cannot be trained on; the message is one line naming the file."""


@dataclass(frozen=True)
class ShapeObject:
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # pixels: x0, y0, x1, y1 (inclusive)

    def grounding_box(self, width: int = SIZE, height: int = SIZE) -> tuple[int, int, int, int]:
        """The box in 000-999 coordinates (the inverse of ``Box.to_pixels``, rounded)."""
        x0, y0, x1, y1 = self.box
        return (min(SCALE - 1, round(x0 * SCALE / width)), min(SCALE - 1, round(y0 * SCALE / height)),
                min(SCALE - 1, round(x1 * SCALE / width)), min(SCALE - 1, round(y1 * SCALE / height)))

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    background: tuple[int, int, int]
    objects: tuple[ShapeObject, ...]


@dataclass(frozen=True)
class Sample:
    """One training or evaluation item: an image, a question and its answer."""

    image: Image.Image
    query: str
    answer: str
    kind: str  # colour, shape, count, position or box
    scene: Scene


def format_box(box: tuple[int, int, int, int]) -> str:
    return "[[" + ",".join(f"{v:03d}" for v in box) + "]]"


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 6) -> bool:
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


def make_scene(rng: random.Random, max_objects: int = 1) -> Scene:
    """1..max_objects shapes, each of a different colour and a different shape (so a colour or a
    shape alone names an object), not touching each other."""
    count = rng.randint(1, max(1, min(max_objects, len(SHAPES))))
    colours = rng.sample(sorted(COLOURS), count)
    shapes = rng.sample(SHAPES, count)
    shade = rng.randint(225, 255)
    background = (shade, shade - rng.randint(0, 10), shade - rng.randint(0, 10))
    objects: list[ShapeObject] = []
    while len(objects) < count:
        side = rng.randint(36, 100) if count == 1 else rng.randint(32, 72)
        width = side if shapes[len(objects)] != "square" else side
        x0, y0 = rng.randint(4, SIZE - 5 - width), rng.randint(4, SIZE - 5 - side)
        box = (x0, y0, x0 + width - 1, y0 + side - 1)
        if any(_overlaps(box, o.box) for o in objects):
            continue
        objects.append(ShapeObject(colours[len(objects)], shapes[len(objects)], box))
    return Scene(background, tuple(objects))


def render(scene: Scene) -> Image.Image:
    """The scene as a JPEG-decoded RGB picture (training sees what evaluation reads from disk)."""
    image = Image.new("RGB", (SIZE, SIZE), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:  # triangle, apex up, filling its box
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, str]]:
    """``(kind, query, answer)`` for one object of ``scene`` (chosen with ``rng``) and the scene."""
    obj = rng.choice(scene.objects)
    centre = (obj.box[0] + obj.box[2]) / 2
    expr = f"the {obj.name}"
    return [
        ("colour", f"What colour is the {obj.shape}?", obj.colour),
        ("shape", f"What shape is the {obj.colour} object?", obj.shape),
        ("count", "How many shapes are there?", COUNT_WORDS[len(scene.objects)]),
        ("position", f"Is the {obj.name} on the left or the right?", "left" if centre < SIZE / 2 else "right"),
        ("box", grounding_prompt("caption2box", expr=expr), f"{expr} {format_box(obj.grounding_box())}"),
    ]


# How often each kind is asked while training: boxes are the hard part, so they dominate.
KIND_WEIGHTS = {"colour": 2, "shape": 2, "count": 1, "position": 1, "box": 6}


def samples(seed: int, split: str = "train", max_objects: int = 1,
            weights: dict[str, int] | None = None) -> Iterator[Sample]:
    """An endless deterministic stream of samples for ``split``, one question per scene."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {list(SPLITS)}")
    rng = random.Random(f"{seed}/{split}/{max_objects}")
    table = weights or KIND_WEIGHTS
    kinds, chances = list(table), list(table.values())
    while True:
        scene = make_scene(rng, max_objects)
        by_kind = {kind: (query, answer) for kind, query, answer in questions(scene, rng)}
        kind = rng.choices(kinds, chances)[0]
        query, answer = by_kind[kind]
        yield Sample(render(scene), query, answer, kind, scene)


def write_dataset(root: str | Path, *, train: int, valid: int, seed: int = 1, max_objects: int = 1) -> Path:
    """Write ``root/train`` and ``root/valid`` with every question of each scene in its label."""
    root = Path(root)
    for split, count in (("train", train), ("valid", valid)):
        if count < 0:
            raise ValueError(f"{split} count {count}: expected 0 or more")
        rng = random.Random(f"{seed}/{split}/{max_objects}/files")
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            scene = make_scene(rng, max_objects)
            turns: list[dict[str, str]] = []
            for _, query, answer in questions(scene, rng):
                turns += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
            label = {"conversations": turns, "objects": [
                {"colour": o.colour, "shape": o.shape, "box": list(o.grounding_box())} for o in scene.objects]}
            stem = f"{index:08d}"
            buffer = io.BytesIO()
            render(scene).save(buffer, format="JPEG", quality=95)
            write_atomic(root / split / "images" / f"{stem}.jpg", buffer.getvalue())
            write_atomic(root / split / "labels" / f"{stem}.json", json.dumps(label, indent=1) + "\n")
    return root


# ---------------------------------------------------------------------------------------------
# Reading a folder back (also a user's own data in the same layout)


@dataclass(frozen=True)
class Item:
    """One labelled image on disk: its turns as (query, answer) pairs and, if given, objects."""

    image: Path
    turns: tuple[tuple[str, str], ...]
    objects: tuple[dict[str, Any], ...]


def _turns(path: Path, label: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(label, dict) or not isinstance(label.get("conversations"), list):
        raise DataError(f"{path}: malformed label: expected an object with a 'conversations' list")
    conv = label["conversations"]
    if not conv or len(conv) % 2:
        raise DataError(f"{path}: malformed label: expected user/assistant pairs in 'conversations', "
                        f"got {len(conv)} entries")
    pairs = []
    for user, assistant in zip(conv[0::2], conv[1::2], strict=True):
        ok = (isinstance(user, dict) and isinstance(assistant, dict) and user.get("role") == "user"
              and assistant.get("role") == "assistant" and isinstance(user.get("content"), str)
              and isinstance(assistant.get("content"), str) and user["content"].strip()
              and assistant["content"].strip())
        if not ok:
            raise DataError(f"{path}: malformed label: expected {{'role': 'user'|'assistant', 'content': text}} "
                            f"turns, alternating and non-empty")
        pairs.append((user["content"], assistant["content"]))
    return tuple(pairs)


def load_split(directory: str | Path) -> list[Item]:
    """Every ``images/*.jpg`` with its ``labels/*.json``, checked: a missing, unreadable or
    malformed file is a :class:`DataError` naming it, before any training starts."""
    directory = Path(directory)
    images_dir = directory / "images"
    if not images_dir.is_dir():
        raise DataError(f"{directory}: no 'images' folder (expected images/*.jpg and labels/*.json, "
                        f"the CogVLM-SFT-311K layout)")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise DataError(f"{images_dir}: empty (expected images/*.jpg with a labels/<same name>.json each)")
    items = []
    for image in images:
        label_path = directory / "labels" / f"{image.stem}.json"
        if not label_path.is_file():
            raise DataError(f"{image}: no label {label_path} (expected one JSON file per image)")
        try:
            with Image.open(image) as im:
                im.verify()  # header and structure; a truncated body fails at load below
            with Image.open(image) as im:
                im.load()
        except Exception as e:  # Pillow raises many types for broken files
            raise DataError(f"{image}: unreadable image ({type(e).__name__}: {e})") from e
        try:
            label = json.loads(label_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{label_path}: malformed label: not JSON ({e})") from e
        objects = label.get("objects", []) if isinstance(label, dict) else []
        items.append(Item(image, _turns(label_path, label), tuple(objects)))
    return items
