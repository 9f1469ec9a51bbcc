"""``cogtrace report`` end to end on the tiny default: trace, views, report, browser check.

This is the views issue's "done when": construction graph, module tree, hook table,
architecture diagram with real shapes, token layout and generation steps in one report that
a headless browser shows.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from test_render_browser import assert_not_blank, chromium, screenshot

from tracer.cli import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tracer.session") is None,
                                reason="the tracer engine (tracer/recorder.py) is not there yet")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' not installed")
    out = tmp_path_factory.mktemp("report")
    code = main(["report", "configs/tiny/cogvlm-grounding-generalist", "--max-new-tokens", "2", "-o", str(out)])
    assert code == 0
    return out


def test_report_writes_every_view(report_dir: Path) -> None:
    for name in ("report.html", "trace.json", "trace.chrome.json", "architecture.svg", "architecture.png",
                 "calls.svg", "modules.svg", "tokens.png", "tree.txt", "modules.txt", "hooks.txt", "steps.txt",
                 "tokens.txt", "output.png"):
        assert (report_dir / name).stat().st_size > 100, name
    assert not list(report_dir.glob(".*.tmp"))
    steps = (report_dir / "steps.txt").read_text()
    assert "context" in steps and steps.count(" step ") >= 1
    tree = (report_dir / "tree.txt").read_text()
    assert "add_mixin('eva', ImageMixin)" in tree and "del_mixin('rotary')" in tree
    page = (report_dir / "report.html").read_text()
    for section in ("architecture", "tokens", "calls", "modules", "hooks", "steps"):
        assert f'id="{section}"' in page


def test_rendering_the_saved_trace_matches(report_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["render", str(report_dir), "--format", "hooks"]) == 0
    assert capsys.readouterr().out == (report_dir / "hooks.txt").read_text()


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (scripts/ensure_chromium.sh)")
def test_report_in_browser(report_dir: Path) -> None:
    shot = report_dir / "screenshot.png"
    screenshot(report_dir / "report.html", shot)
    assert_not_blank(shot)


def test_full_size_construction_report_on_meta(tmp_path: Path) -> None:
    """The full 17.6B model, built on the meta device: construction views, folded 32 layers."""
    out = tmp_path / "full"
    assert main(["report", "configs/full/cogvlm-grounding-generalist", "--device", "meta", "-o", str(out)]) == 0
    modules = (out / "modules.txt").read_text()
    assert "17,639,685,376" in modules and "layers.0–31 ×32" in modules and "layers.0–62 ×63" in modules
    assert not (out / "steps.txt").exists() and not (out / "tokens.png").exists()
    dot = (out / "architecture.dot").read_text()
    assert "[B, S, 32000]" in dot and "[B, N, 4096]" in dot  # widths read from the weights
    assert 'id="calls"' in (out / "report.html").read_text()
