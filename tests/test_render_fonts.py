"""Chinese prompts must draw as characters, not as the empty boxes of a missing glyph."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from tracer.render.fonts import cjk_font_file, font_for, has_cjk


def _ink(text: str, cjk: bool) -> bytes:
    image = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(image).text((4, 4), text, fill=255, font=font_for(24, cjk=cjk))
    return image.tobytes()


def test_has_cjk() -> None:
    assert has_cjk("图中的红色方块") and has_cjk("？") and has_cjk("カ") and has_cjk("한")
    assert not has_cjk("▁Where is the red square? [[1,2,3,4]] → ×1225")


def test_cjk_font_draws_distinct_glyphs() -> None:
    if cjk_font_file() is None:
        pytest.skip("no CJK font installed (scripts/ensure_fonts.sh installs fonts-wqy-microhei)")
    # A font without the glyphs draws the same empty box for every character.
    assert _ink("图", cjk=True) != _ink("方", cjk=True)
    assert any(_ink("图", cjk=True))


def test_latin_font_is_unchanged_for_latin_text() -> None:
    assert _ink("A", cjk=False) != _ink("B", cjk=False)
