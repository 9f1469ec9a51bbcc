"""Fonts for the pictures Pillow draws (token layout, grounding boxes), Chinese included.

Most readers of the article write their prompts in Chinese, and Pillow draws a missing
glyph as an empty box: a font without CJK glyphs turns "图中的红色方块" into "□□□□". Pillow
does not fall back from one font to another per character, so we pick the font per string:
DejaVu Sans for Latin text (it has SentencePiece's '▁' and the arrows), a CJK font when the
string holds CJK characters. ``make`` installs a small CJK font on Debian/Ubuntu
(``scripts/ensure_fonts.sh``); without one, CJK text still draws, as boxes.

No torch, no SAT: renderers import this.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Any

__all__ = ["cjk_font_file", "font_for", "has_cjk"]

_LATIN_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# Common places of a CJK font: Debian's WenQuanYi and Noto packages, macOS, Windows.
_CJK_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
# Unicode blocks drawn from a CJK font: radicals to CJK unified ideographs (U+2E80–U+9FFF,
# kana and CJK punctuation included), Hangul syllables, compatibility ideographs, and
# full-width forms such as '？' and '，'.
_CJK_RANGES = ((0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF),
               (0x20000, 0x2FA1F))


def has_cjk(text: str) -> bool:
    """True if any character of ``text`` needs a CJK font."""
    return any(lo <= ord(c) <= hi for c in text for lo, hi in _CJK_RANGES)


@functools.cache
def cjk_font_file() -> str | None:
    """A font file with Chinese glyphs: a known path, else what fontconfig suggests, else None."""
    from pathlib import Path

    for name in _CJK_FILES:
        if Path(name).is_file():
            return name
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        found = subprocess.run([fc_match, "-f", "%{file}", "sans-serif:lang=zh-cn"], capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    # fontconfig answers with its best match even when nothing covers Chinese: accept only a
    # file whose name says it does.
    hints = ("cjk", "wqy", "han", "hei", "ming", "song", "kai", "pingfang", "yahei", "msyh", "droidsansfallback")
    return found if found and any(h in found.lower() for h in hints) else None


@functools.cache
def font_for(size: int, cjk: bool = False) -> Any:
    """A FreeType font of ``size`` px: CJK-capable if ``cjk`` and one is installed, else
    DejaVu Sans, else Pillow's bundled font."""
    from PIL import ImageFont

    names = ((cjk_font_file(),) if cjk else ()) + _LATIN_FILES
    for name in names:
        if name is None:
            continue
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)
