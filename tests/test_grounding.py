"""Grounding: boxes parsed from crafted and malformed answers, drawn where they belong, saved atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from tracer.cogvlm.grounding import (
    Box,
    GroundedPhrase,
    draw_grounding,
    fit_for_drawing,
    parse_grounding,
    save_atomically,
    save_grounding,
)
from tracer.errors import UserError


def _pairs(response: str) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    return [(p.phrase, [(b.x0, b.y0, b.x1, b.y1) for b in p.boxes]) for p in parse_grounding(response).phrases]


# ---------------------------------------------------------------------------------------------
# Parsing


def test_one_box() -> None:
    assert _pairs("The red square [[102,122,397,418]].") == [("The red square", [(102, 122, 397, 418)])]


def test_several_phrases() -> None:
    response = ("A red square [[102,120,398,415]] is on the left, a blue circle [[560,140,880,460]] is on "
                "the right and a green triangle [[300,600,700,940]] is at the bottom.")
    assert _pairs(response) == [
        ("A red square", [(102, 120, 398, 415)]),
        ("a blue circle", [(560, 140, 880, 460)]),
        ("a green triangle", [(300, 600, 700, 940)]),
    ]


def test_several_boxes_for_one_phrase() -> None:
    response = "Two cats [[010,500,300,990;620,480,990,980]] sit on a sofa [[000,400,999,999]]."
    assert _pairs(response) == [("Two cats", [(10, 500, 300, 990), (620, 480, 990, 980)]),
                                ("a sofa", [(0, 400, 999, 999)])]
    # Also when each box keeps its own brackets.
    assert _pairs("Two cats [[010,500,300,990];[620,480,990,980]]")[0][1] == [(10, 500, 300, 990),
                                                                            (620, 480, 990, 980)]


def test_phrase_heuristics() -> None:
    assert _pairs("A man in a black coat [[120,080,460,990]] holds an umbrella [[050,010,520,300]].") == [
        ("a black coat", [(120, 80, 460, 990)]), ("an umbrella", [(50, 10, 520, 300)])]
    assert _pairs("Where is the star? [[734,612,959,836]]")[0][0] == "the star"
    assert _pairs("红色正方形[[102,120,398,415]]，蓝色圆形[[560,140,880,460]]。") == [
        ("红色正方形", [(102, 120, 398, 415)]), ("蓝色圆形", [(560, 140, 880, 460)])]
    assert _pairs("[[001,002,003,004]]") == [("", [(1, 2, 3, 4)])]  # a box with no text before it


def test_whitespace_inside_boxes_is_tolerated() -> None:
    assert _pairs("a dot [[ 010, 020 ,030,040 ]]") == [("a dot", [(10, 20, 30, 40)])]


@pytest.mark.parametrize("response, reason", [
    ("a [[1,2,3]]", "expected 4 coordinates, got 3"),
    ("a [[1,2,3,4,5]]", "expected 4 coordinates, got 5"),
    ("a [[]]", "expected 4 coordinates, got 1"),
    ("a [[a,b,c,d]]", "expected integers 000-999"),
    ("a [[-1,2,3,4]]", "expected integers 000-999"),
    ("a [[1.5,2,3,4]]", "expected integers 000-999"),
    ("a [[1000,0,5,5]]", "coordinates must be 000-999"),
    ("a [[500,500,100,100]]", "expected x0 <= x1 and y0 <= y1"),
])
def test_malformed_boxes_are_rejected_with_a_reason(response: str, reason: str) -> None:
    grounding = parse_grounding(response)
    assert grounding.phrases == ()
    assert len(grounding.rejected) == 1 and reason in grounding.rejected[0]


@pytest.mark.parametrize("response", ["", "No boxes here.", "[[12,34", "[12,34,56,78]", "]]1,2,3,4[["])
def test_no_boxes(response: str) -> None:
    assert parse_grounding(response).phrases == () and parse_grounding(response).rejected == ()


def test_mixed_good_and_bad_boxes_in_one_group() -> None:
    grounding = parse_grounding("cats [[010,500,300,990;oops;620,480,990,980]]")
    assert grounding.phrases == (GroundedPhrase("cats", (Box(10, 500, 300, 990), Box(620, 480, 990, 980))),)
    assert grounding.rejected == ("[[oops]]: expected 4 coordinates, got 1",)


def test_scaling_to_pixels() -> None:
    assert Box(0, 0, 999, 999).to_pixels(490, 490) == (0, 0, 489, 489)
    assert Box(102, 122, 397, 418).to_pixels(490, 490) == (49, 59, 194, 204)
    assert Box(500, 250, 750, 1).to_pixels(200, 100) == (100, 25, 150, 0)


# ---------------------------------------------------------------------------------------------
# Drawing and saving


def test_boxes_are_drawn_where_they_belong() -> None:
    white = Image.new("RGB", (200, 100), (255, 255, 255))
    drawn = draw_grounding(white, parse_grounding("a thing [[100,200,600,900]]"), fit=False)
    assert drawn.size == (200, 100)
    x0, y0, x1, y1 = 20, 20, 120, 90
    assert drawn.getpixel((x0, (y0 + y1) // 2)) != (255, 255, 255)  # left edge
    assert drawn.getpixel((x1, y0 + 5)) != (255, 255, 255)  # right edge
    assert drawn.getpixel((5, 5)) == (255, 255, 255)  # outside
    assert white.getpixel((x0, y0)) == (255, 255, 255)  # the input is untouched


def test_fit_matches_upstream() -> None:
    assert fit_for_drawing(Image.new("RGB", (490, 490))).size == (1080, 1080)
    assert fit_for_drawing(Image.new("RGB", (3840, 1080))).size == (1920, 540)


def test_save_grounding_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "output.png"
    grounding = save_grounding(Image.new("RGB", (49, 49), "white"), "the square [[102,122,397,418]]", out)
    assert len(grounding.boxes) == 1
    with Image.open(out) as saved:
        assert saved.format == "PNG" and saved.size == (1080, 1080)
    assert [p.name for p in tmp_path.iterdir()] == ["output.png"]  # no temporary left over
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_failed_save_leaves_no_partial_file(tmp_path: Path) -> None:
    class Broken:
        def save(self, f: object, format: str) -> None:
            f.write(b"\x89PNG half")  # type: ignore[attr-defined]
            raise OSError("disk full")

    out = tmp_path / "output.png"
    with pytest.raises(OSError, match="disk full"):
        save_atomically(Broken(), out)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")  # an existing file survives a failed save intact
    with pytest.raises(OSError):
        save_atomically(Broken(), out)  # type: ignore[arg-type]
    assert out.read_bytes() == b"old" and list(tmp_path.iterdir()) == [out]


def test_bad_output_paths(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(UserError, match="does not exist"):
        save_atomically(image, tmp_path / "no" / "output.png")
    with pytest.raises(UserError, match="is a directory"):
        save_atomically(image, tmp_path)
