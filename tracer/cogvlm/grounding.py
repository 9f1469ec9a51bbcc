"""Boxes in CogVLM's answers: parse ``[[x0,y0,x1,y1]]``, draw them, save ``output.png``.

The grounding checkpoint writes a box right after the phrase it belongs to, with
coordinates relative to the image, times 1000, as three digits (``000``-``999``); the
origin is the top-left corner, ``(x0, y0)`` is the box's top-left and ``(x1, y1)`` its
bottom-right corner. One phrase may have several boxes, separated by ``;``::

    Two cats [[010,500,300,990;620,480,990,980]] sit on a sofa [[000,400,999,999]].

Upstream (``utils/utils/grounding_parser.py``) finds each phrase with spaCy's noun chunks
and draws with seaborn colours and a matplotlib font. Here, without those dependencies:
the phrase is the end of the text before the box, cut at the previous box, at clause
punctuation and at a small set of linking words (``is``, ``and``, ``with``, ``in`` ...), so
"a man in a black coat [[...]]" gives "a black coat", as a noun chunk would. Boxes that are
not four integers in 0-999 with ``x0 <= x1`` and ``y0 <= y1`` are reported, not drawn.

As upstream, the picture is scaled to fit 1920 x 1080 (small images are enlarged so a
26-pixel label stays readable) before drawing. The file is written atomically: into a
temporary file in the same folder, then ``os.replace``d, so a failure never leaves a
partial ``output.png``.
"""

from __future__ import annotations

import colorsys
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import UserError
from ..files import write_atomic
from ..render.fonts import font_for, has_cjk

__all__ = ["Box", "GroundedPhrase", "Grounding", "check_output_file", "draw_grounding", "parse_grounding", "save_atomically",
           "save_grounding"]

BOX_PATTERN = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
COORDINATE_SCALE = 1000  # coordinates are fractions of the image size times 1000
FIT = (1920, 1080)  # upstream draws on the image scaled to fit this
LINE_WIDTH = 5
FONT_SIZE = 26
# Where a phrase starts when walking back from its box (clause punctuation, EN and ZH).
_CLAUSE_END = re.compile(r"[.,;:!?\n，。；：！？、]")
_LINKING = frozenset(
    "is are was were be been am and or but with while which that who where when of in on at to from by for "
    "near next beside behind under above over between inside outside across along into onto than as has have "
    "there here it its this these those".split())
# A phrase starts at its last determiner, if any: "holds an umbrella" -> "an umbrella".
_DETERMINERS = frozenset("a an the one two three four five six seven eight nine ten some many several".split())


@dataclass(frozen=True)
class Box:
    """One box in the model's 0-999 coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Pixel corners on a ``width`` x ``height`` image (upstream's ``int(v / 1000 * size)``)."""
        return (int(self.x0 / COORDINATE_SCALE * width), int(self.y0 / COORDINATE_SCALE * height),
                int(self.x1 / COORDINATE_SCALE * width), int(self.y1 / COORDINATE_SCALE * height))


@dataclass(frozen=True)
class GroundedPhrase:
    phrase: str
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Grounding:
    """Everything found in one response: drawable phrases and what was rejected, with why."""

    phrases: tuple[GroundedPhrase, ...] = ()
    rejected: tuple[str, ...] = field(default=())

    @property
    def boxes(self) -> list[Box]:
        return [box for p in self.phrases for box in p.boxes]


# ---------------------------------------------------------------------------------------------
# Parsing


def _parse_box(text: str) -> Box | str:
    """A Box, or the reason ``text`` is not one."""
    # Stray brackets are tolerated: "[[a,b,c,d];[e,f,g,h]]" reads as "[[a,b,c,d;e,f,g,h]]".
    parts = [part.strip(" []") for part in text.split(",")]
    if len(parts) != 4:
        return f"[[{text}]]: expected 4 coordinates, got {len(parts)}"
    if not all(part.isdigit() and part.isascii() for part in parts):
        return f"[[{text}]]: expected integers 000-999"
    x0, y0, x1, y1 = (int(part) for part in parts)
    if max(x0, y0, x1, y1) >= COORDINATE_SCALE:
        return f"[[{text}]]: coordinates must be 000-999"
    if x0 > x1 or y0 > y1:
        return f"[[{text}]]: expected x0 <= x1 and y0 <= y1"
    return Box(x0, y0, x1, y1)


def _phrase_before(text: str) -> str:
    """The phrase a box refers to: the tail of ``text`` (the text since the previous box)."""
    text = text.rstrip()
    clauses = [c for c in _CLAUSE_END.split(text)]
    # A box right after punctuation ("Where is the cat? [[...]]") refers to that clause.
    clause = next((c for c in reversed(clauses) if c.strip()), "").strip()
    words = clause.split()
    if len(words) <= 1:
        return clause
    kept: list[str] = []
    for word in reversed(words):
        if word.lower() in _LINKING and kept:
            break
        kept.append(word)
    kept.reverse()
    starts = [i for i, word in enumerate(kept) if word.lower() in _DETERMINERS]
    return " ".join(kept[starts[-1]:] if starts else kept)


def parse_grounding(response: str) -> Grounding:
    """Find every ``[[...]]`` group in ``response`` with the phrase before it."""
    phrases: list[GroundedPhrase] = []
    rejected: list[str] = []
    previous_end = 0
    for match in BOX_PATTERN.finditer(response):
        boxes: list[Box] = []
        for part in match.group(1).split(";"):
            parsed = _parse_box(part)
            if isinstance(parsed, Box):
                boxes.append(parsed)
            else:
                rejected.append(parsed)
        phrase = _phrase_before(response[previous_end:match.start()])
        previous_end = match.end()
        if boxes:
            phrases.append(GroundedPhrase(phrase, tuple(boxes)))
    return Grounding(tuple(phrases), tuple(rejected))


# ---------------------------------------------------------------------------------------------
# Drawing and saving


def _palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` evenly spaced, equally bright hues (upstream uses seaborn's husl palette)."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb(i / max(n, 1), 0.5, 0.8)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def fit_for_drawing(image: Image.Image, bounds: tuple[int, int] = FIT) -> Image.Image:
    """Scale ``image`` (up or down, keeping its aspect) to fit ``bounds``, as upstream does."""
    width, height = image.size
    ratio = min(bounds[0] / width, bounds[1] / height)
    size = (max(1, int(width * ratio)), max(1, int(height * ratio)))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _font(text: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font at upstream's size (26 px) that has the phrase's glyphs (Chinese phrases too)."""
    return font_for(FONT_SIZE, cjk=has_cjk(text))  # type: ignore[no-any-return]


def draw_grounding(image: Image.Image, grounding: Grounding, fit: bool = True) -> Image.Image:
    """A copy of ``image`` with every box outlined and labelled with its phrase."""
    canvas = fit_for_drawing(image) if fit else image.convert("RGB")
    width, height = canvas.size
    overlay = Image.new("RGBA", canvas.size, (255, 255, 255, 0))
    draw = ImageDraw.Draw(overlay)
    for item, colour in zip(grounding.phrases, _palette(len(grounding.phrases)), strict=True):
        for box in item.boxes:
            x0, y0, x1, y1 = box.to_pixels(width, height)
            draw.rectangle((x0, y0, x1, y1), outline=colour, width=LINE_WIDTH)
            # A dark hairline on both sides keeps the box visible on an object of its own colour.
            draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(0, 0, 0, 200), width=1)
            if x1 - x0 > 2 * LINE_WIDTH and y1 - y0 > 2 * LINE_WIDTH:
                draw.rectangle((x0 + LINE_WIDTH, y0 + LINE_WIDTH, x1 - LINE_WIDTH, y1 - LINE_WIDTH),
                               outline=(0, 0, 0, 200), width=1)
            if not item.phrase:
                continue
            font = _font(item.phrase)
            left, top, right, bottom = draw.textbbox((0, 0), item.phrase, font=font)
            text_w, text_h = right - left, bottom - top
            # Inside the box at its bottom; below it when the box is too small to hold a label.
            small = x1 - x0 < 100 or y1 - y0 < 100
            x = x0 + LINE_WIDTH
            y = y1 if small else y1 - text_h - LINE_WIDTH - top
            draw.rectangle((x, y, x + text_w, y + text_h + top), fill=(128, 128, 128, 160))
            draw.text((x - left, y), item.phrase, font=font, fill=(255, 255, 255, 255))
    return Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")


def check_output_file(path: Path) -> None:
    """A ``UserError`` unless ``path`` can be written as a new or replaced image file."""
    if path.is_dir():
        raise UserError(f"--output {path}: is a directory, expected a file name such as output.png")
    if not path.parent.is_dir():
        raise UserError(f"--output {path}: folder {path.parent} does not exist")


def save_atomically(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG to ``path`` so that ``path`` is either the old file or the whole new one."""
    path = Path(path)
    check_output_file(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())


def save_grounding(image: Image.Image, response: str, path: str | Path = "output.png") -> Grounding:
    """Upstream's ``parse_response``: parse ``response``, draw its boxes on ``image``, save to ``path``."""
    grounding = parse_grounding(response)
    save_atomically(draw_grounding(image, grounding), path)
    return grounding
