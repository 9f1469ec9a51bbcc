#!/usr/bin/env python
"""Draw ``tracer/cogvlm/assets/sample.png``, the default image of ``cogtrace chat``.

Simple shapes on a white background, so a grounding answer such as "the red square
[[102,122,398,418]]" can be checked by eye. The shapes' boxes, in CogVLM's 0-999 coordinates,
are printed (and listed in ``SHAPES``). Pure Pillow drawing calls, no randomness: the same
pixels on every run.

Usage::

    .venv/bin/python scripts/make_sample_image.py [--output PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

OUTPUT = Path(__file__).resolve().parent.parent / "tracer" / "cogvlm" / "assets" / "sample.png"
SIZE = 490  # CogVLM's input size: the processor's resize is then the identity

# name -> (colour, pixel box x0, y0, x1, y1)
SHAPES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int, int]]] = {
    "red square": ((220, 40, 40), (50, 60, 195, 205)),
    "blue circle": ((40, 80, 220), (275, 70, 430, 225)),
    "green triangle": ((40, 170, 70), (150, 280, 340, 450)),
    "yellow star": ((240, 200, 20), (360, 300, 470, 410)),
}


def _star(box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    import math

    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((round(cx + radius * math.cos(angle), 2), round(cy + radius * math.sin(angle), 2)))
    return points


def draw_sample() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colour, box = SHAPES["red square"]
    draw.rectangle(box, fill=colour)
    colour, box = SHAPES["blue circle"]
    draw.ellipse(box, fill=colour)
    colour, (x0, y0, x1, y1) = SHAPES["green triangle"]
    draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    colour, box = SHAPES["yellow star"]
    draw.polygon(_star(box), fill=colour)
    return image


def boxes_0_999() -> dict[str, str]:
    """Each shape's box as CogVLM writes it: ``[[x0,y0,x1,y1]]``, coordinates * 1000 / size."""
    return {name: "[[" + ",".join(f"{int(v * 1000 / SIZE):03d}" for v in box) + "]]"
            for name, (_, box) in SHAPES.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    draw_sample().save(args.output, format="PNG", optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")
    for name, box in boxes_0_999().items():
        print(f"  {name:<15} {box}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
