"""The HTML report: valid, self-contained (no network), with every section and working images."""

from __future__ import annotations

import base64
import io
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from fixtures.render_support import load

from tracer.render.report import render_html

SECTIONS = ("architecture", "tokens", "calls", "modules", "hooks", "steps")
VOID = {"meta", "img", "br", "input", "link", "hr", "source", "wbr"}


class Collector(HTMLParser):
    """Checks nesting and gathers every URL-valued attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value is not None:
                self.urls.append((tag, name, value))
            if name == "id" and value:
                self.ids.add(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


@pytest.fixture(scope="module")
def html() -> str:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' not installed (scripts/ensure_graphviz.sh)")
    return render_html(load("real"))


def test_parses_with_balanced_tags_and_all_sections(html: str) -> None:
    parser = Collector()
    parser.feed(html)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert set(SECTIONS) <= parser.ids
    assert parser.counts.get("li", 0) >= 30  # the foldable call, module and dispatch trees
    assert parser.counts.get("table", 0) >= 4  # modules, two hook tables, mixin changes, steps


def test_self_contained(html: str) -> None:
    parser = Collector()
    parser.feed(html)
    for tag, attr, url in parser.urls:
        assert url.startswith(("data:", "#", "vscode://file/")), f"<{tag} {attr}={url[:60]}> is not inline"
    assert "<link" not in html and "<script src" not in html and "@import" not in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_images_are_valid(html: str) -> None:
    """Diagrams are inline SVG (their nodes link to rows); any <img> is a valid data: image."""
    from PIL import Image

    parser = Collector()
    parser.feed(html)
    assert parser.counts.get("svg", 0) >= 3  # architecture, call graph, module tree
    for svg in html.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    for url in [url for tag, attr, url in parser.urls if tag == "img"]:
        header, _, payload = url.partition(",")
        data = base64.b64decode(payload)
        if header.startswith("data:image/svg+xml"):
            assert ET.fromstring(data).tag.endswith("svg")
        else:
            assert header.startswith("data:image/png")
            Image.open(io.BytesIO(data)).load()


def test_source_links(html: str) -> None:
    # the real trace records sat/... and tracer/... paths; both resolve on this machine
    assert 'href="vscode://file/' in html
    assert "sat/model/base_model.py:" in html


def test_report_without_dot_still_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    from tracer.render import diagrams

    def missing(dot: str) -> bytes:
        raise diagrams.GraphvizMissing("Graphviz 'dot' not found")

    monkeypatch.setattr(diagrams, "to_svg", missing)
    page = render_html(load("synthetic"), timings=False)
    assert "not drawn (Graphviz" in page and 'id="modules"' in page
