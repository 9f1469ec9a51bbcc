"""The HTML report in a real headless browser (Debian's chromium; scripts/ensure_chromium.sh).

A screenshot proves what a parser cannot: the page lays out, the inline SVG and PNG images
decode, and the top of the report is not blank.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fixtures.render_support import load

from tracer.render.report import render_html

WIDTH, HEIGHT = 1400, 2000


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, out: Path, *, width: int = WIDTH, height: int = HEIGHT) -> None:
    """The flags make chromium work offline, as root, with no GPU and no first-run noise."""
    browser = chromium()
    assert browser is not None
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={width},{height}",
                        page.resolve().as_uri()], capture_output=True, timeout=90, check=False)


def assert_not_blank(path: Path) -> None:
    from PIL import Image, ImageStat

    image = Image.open(path).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = image.getcolors(1 << 20) or []
    assert len(colours) > 200, f"only {len(colours)} colours: the page looks blank"
    stddev = ImageStat.Stat(image.convert("L")).stddev[0]
    assert stddev > 20, f"luminance stddev {stddev:.1f}: the page looks blank"
    header = image.crop((0, 0, WIDTH, 60)).convert("L")
    assert ImageStat.Stat(header).mean[0] < 100  # the dark title bar rendered


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (run scripts/ensure_chromium.sh; "
                                               "Debian/Ubuntu: apt-get install chromium)")
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed")
def test_report_screenshot(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(load("real")), encoding="utf-8")
    shot = tmp_path / "shot.png"
    screenshot(page, shot)
    assert shot.is_file(), "chromium wrote no screenshot"
    assert_not_blank(shot)
