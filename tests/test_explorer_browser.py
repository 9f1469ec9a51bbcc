"""The explorer (report.html, diff --format html) in real headless Chromium, offline.

Driven over the DevTools protocol (``bench/browser.py``): the page is opened from disk with the
network emulated offline and host names unresolvable, then used as a person would — real mouse
clicks and key presses — and every request it makes is recorded.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.render_support import load

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is run from the checkout, not installed
    sys.path.insert(0, str(REPO))

from bench.browser import Browser, Page, chromium  # noqa: E402
from tracer.diff import diff_traces  # noqa: E402
from tracer.render.explorer import render_diff_html  # noqa: E402
from tracer.render.report import render_html  # noqa: E402
from tracer.schema import Trace  # noqa: E402

pytestmark = [
    pytest.mark.skipif(chromium() is None, reason="chromium not installed (scripts/ensure_chromium.sh)"),
    pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed"),
]
WIDTH = 1280
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explorer") / "report.html"
    path.write_text(render_html(load("real")), encoding="utf-8")
    return path


@pytest.fixture()
def page(browser: Browser, report: Path) -> Page:
    page = browser.open(report, width=WIDTH, height=900)
    assert page.evaluate("document.documentElement.dataset.ready") == "1", "the explorer script did not start"
    return page


def visible(page: Page, selector: str) -> int:
    return int(page.evaluate(f"Array.from(document.querySelectorAll({selector!r}))"
                             ".filter(e => e.offsetParent !== null).length"))


def test_fold_and_unfold_repeated_layers(page: Page) -> None:
    group = "#visible-group"  # the language model's layers (the vision tower's are inside a folded node)
    assert page.evaluate("(() => { const g = Array.from(document.querySelectorAll('#moduletree li.group'))"
                         ".find(li => li.offsetParent !== null); if (g) g.id = 'visible-group'; return !!g; })()")
    assert page.evaluate(f"document.querySelector('{group}').classList.contains('collapsed')")  # folded by default
    hidden_before = visible(page, "#moduletree .row")
    page.click(f"{group} > .row > .twisty")
    assert not page.evaluate(f"document.querySelector('{group}').classList.contains('collapsed')")
    assert visible(page, "#moduletree .row") > hidden_before  # each layer is listed now
    page.click(f"{group} > .row > .twisty")
    assert visible(page, "#moduletree .row") == hidden_before
    page.click("[data-tree-action=expand][data-target=calltree]")
    assert page.evaluate("document.querySelectorAll('#calltree li.collapsed').length") == 0
    page.click("[data-tree-action=collapse][data-target=calltree]")
    assert visible(page, "#calltree .row") == page.evaluate("document.querySelectorAll('#calltree > li').length")


def test_search_by_mixin_hook_and_shape(page: Page) -> None:
    page.key("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.type("vision_dense_h_to_4h")  # typed into the box, as a person does
    page.evaluate("new Promise(r => setTimeout(r, 400))")  # the search runs once typing pauses
    assert page.evaluate("document.getElementById('search').value") == "vision_dense_h_to_4h"
    # the matches sit inside folded layer groups: the search unfolded their ancestors
    assert visible(page, "#moduletree .row.match") == page.evaluate(
        "document.querySelectorAll('#moduletree .row.match').length") > 0
    assert page.evaluate("document.getElementById('hits').textContent").endswith(("match", "matches"))
    assert page.evaluate("window.cogtraceSearch('LlamaVisionExpertFCMixin')") > 0  # a mixin class
    assert visible(page, "#calltree .row.match") >= 1 and visible(page, "#hooktree .row.match") >= 1
    assert page.evaluate("window.cogtraceSearch('[1, 1240, 64]')") > 0  # a shape
    page.evaluate("document.getElementById('search').focus()")
    page.key("Escape")
    assert page.evaluate("document.querySelectorAll('.hidden').length") == 0


def test_detail_panel_for_a_call_and_a_dispatch(page: Page) -> None:
    page.click("[data-tree-action=expand][data-target=calltree]")
    page.click("#calltree .row[data-search*='LlamaVisionExpertFCMixin'][data-search*='add_mixin'] .name")
    panel = page.evaluate("document.getElementById('detail').innerText")
    assert "add_mixin('mlp', LlamaVisionExpertFCMixin)" in panel
    assert "hook table before → after" in panel and "mlp_forward" in panel
    assert "521,120 → 611,232 (+90,112 params)" in panel  # the parameter delta the mixin brought
    links = page.evaluate("Array.from(document.querySelectorAll('#detail a')).map(a => a.href)")
    assert any(link.startswith("vscode://file/") for link in links)
    assert page.evaluate("document.querySelector('#detail code').textContent").count(":") >= 1  # file:line
    page.click("[data-tree-action=expand][data-target=hooktree]")
    page.click("#hooktree .row[data-search^='mlp_forward'][data-search*='LlamaVisionExpertFCMixin'] .name")
    panel = page.evaluate("document.getElementById('detail').innerText")
    assert "served by" in panel and "weights used" in panel and "mixins.mlp" in panel
    # keyboard: ↓ gives the selection to the next visible row, ← folds back up to its step
    rows = "Array.from(document.querySelectorAll('ul.tree .row')).filter(r => r.offsetParent !== null)"
    expected = page.evaluate(f"(() => {{ const rows = {rows}; const i = rows.indexOf("
                             "document.querySelector('.row.selected')); return rows[i + 1].dataset.ref; })()")
    page.key("ArrowDown", 40)
    assert page.evaluate("document.querySelectorAll('.row.selected').length") == 1
    assert page.evaluate("document.querySelector('.row.selected').dataset.ref") == expected
    assert page.evaluate("document.getElementById('detail').dataset.ref") == expected  # the panel followed
    page.key("ArrowLeft", 37)
    assert page.evaluate("document.querySelector('.row.selected').dataset.search").startswith(("context", "step"))


def test_diagram_fits_1280_and_links_to_rows(page: Page, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # nothing wider than the window
    boxes = page.evaluate("""Array.from(document.querySelectorAll('.diagram')).map(d => {
        const b = d.getBoundingClientRect(), g = d.querySelector('svg g.graph').getBoundingClientRect();
        return [b.left, b.top, b.right, b.bottom, g.left, g.top, g.right, g.bottom]; })""")
    assert len(boxes) >= 3
    for b in boxes:
        assert b[2] <= WIDTH, f"diagram box ends at {b[2]} px"
        assert b[4] >= b[0] - 1 and b[5] >= b[1] - 1 and b[6] <= b[2] + 1 and b[7] <= b[3] + 1, f"cut off: {b}"
    arch = boxes[0]
    scroll = page.evaluate("window.scrollY")
    shot = page.screenshot({"x": arch[0], "y": arch[1] + scroll, "width": arch[2] - arch[0],
                            "height": arch[3] - arch[1]})
    (tmp_path / "architecture-1280.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot)).convert("L")
    assert image.size[0] <= WIDTH and ImageStat.Stat(image).stddev[0] > 10  # drawn, not blank
    # zoom in and back to fit
    before = page.evaluate("document.querySelector('.diagram svg').getAttribute('viewBox')")
    page.click(".diagram .controls button[data-z=in]")
    assert page.evaluate("document.querySelector('.diagram svg').getAttribute('viewBox')") != before
    page.click(".diagram .controls button[data-z=fit]")
    assert page.evaluate("document.querySelector('.diagram svg').getAttribute('viewBox')") == before
    # a call-graph node selects its call in the tree
    page.evaluate("document.querySelectorAll('#calls .diagram g.node')[4].id = 'node-under-test'")
    page.click("#node-under-test")
    title = page.evaluate("document.querySelector('#calls .diagram g.node.linked title').textContent")
    assert page.evaluate("document.querySelector('.row.selected').dataset.order") == title.lstrip("c")


def test_token_hover_and_print_view(page: Page) -> None:
    page.evaluate("document.querySelector('.strip .tok.m2').scrollIntoView({block: 'center'})")
    x, y = page.evaluate("(() => { const r = document.querySelector('.strip .tok.m2').getBoundingClientRect();"
                         " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    page.browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y}, page.session)
    tip = page.evaluate("document.getElementById('tip').textContent")
    assert "piece '<image>'" in tip and "image_rope_mask = 1" in tip and "position id 2" in tip
    assert page.evaluate("document.querySelectorAll('li.collapsed').length") > 0
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.evaluate("document.querySelectorAll('li.collapsed').length") == 0  # everything unfolded
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    assert page.evaluate("document.querySelectorAll('li.collapsed').length") > 0  # and folded back


def test_report_makes_no_network_request(browser: Browser, report: Path) -> None:
    page = browser.open(report)
    assert page.requests == [report.resolve().as_uri()]
    assert page.evaluate("performance.getEntriesByType('resource').length") == 0
    # the check itself works: a request the page did make would be recorded
    page.evaluate("new Promise(r => { const i = new Image(); i.onerror = i.onload = r; "
                  "i.src = 'http://example.invalid/x.png'; })")
    assert "http://example.invalid/x.png" in page.requests


def test_diff_page_two_columns(browser: Browser, tmp_path: Path) -> None:
    def read(name: str) -> Trace:
        with (FIXTURES / name).open(encoding="utf-8") as f:
            return Trace.load(f)

    a, b = read("diff_chat.json"), read("diff_grounding.json")
    path = tmp_path / "diff.html"
    path.write_text(render_diff_html(diff_traces(a, b, a_name="chat", b_name="grounding"), a, b), encoding="utf-8")
    page = browser.open(path)
    assert page.requests == [path.resolve().as_uri()]
    assert page.evaluate("document.querySelectorAll('tbody.same.collapsed').length") > 0  # unchanged runs folded
    hidden = visible(page, "#construction tr[data-ref]")
    page.click("#construction tr.foldrow")
    assert visible(page, "#construction tr[data-ref]") > hidden
    page.click("#construction tr.changed td.b")
    panel = page.evaluate("document.getElementById('detail').innerText")
    assert panel.count("arguments") == 2 and panel.startswith("A")  # A's details, then B's
    assert page.evaluate("window.cogtraceSearch('_shrunk')") > 0
    assert page.evaluate("document.querySelectorAll('#tokens .strip').length") == 2
