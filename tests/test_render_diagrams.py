"""Graphviz views: golden DOT, deterministic output, and SVG/PNG that real parsers accept."""

from __future__ import annotations

import dataclasses
import io
import random
import shutil
import xml.etree.ElementTree as ET

import pytest
from fixtures.render_support import check_golden, load

from tracer.cogvlm.architecture import architecture
from tracer.render.diagrams import DIAGRAMS, dot_source, to_png, to_svg

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed "
                               "(scripts/ensure_graphviz.sh installs it)")


@pytest.mark.parametrize("kind", ["synthetic", "real"])
@pytest.mark.parametrize("diagram", DIAGRAMS)
def test_dot_golden(request: pytest.FixtureRequest, kind: str, diagram: str) -> None:
    check_golden(request, f"{kind}.{diagram}.dot", dot_source(load(kind), diagram))


@pytest.mark.parametrize("diagram", DIAGRAMS)
def test_dot_is_deterministic_and_free_of_volatile_fields(diagram: str) -> None:
    trace = load("real")
    events = list(trace.events)
    random.Random(1).shuffle(events)
    # Same content with other ids and times: a second run of the same input.
    moved = tuple(dataclasses.replace(e, start_ns=e.start_ns + 7, duration_ns=e.duration_ns * 3) for e in events)
    dot = dot_source(trace, diagram)
    assert dot_source(dataclasses.replace(trace, events=moved), diagram) == dot
    assert "0x" not in dot and " ms" not in dot


def test_architecture_reads_real_shapes() -> None:
    a = architecture(load("real"))
    s = a.stages
    assert s["image"].shape_out == "[1, 3, 490, 490]"
    assert s["patch"].shape_out == "[1, 48, 35, 35]"
    assert s["cls"].shape_out == "[1, 1226, 48]"  # 1225 patches + CLS
    assert s["drop"].shape_out == "[1, 1225, 48]"  # CLS dropped by the 'final' mixin
    assert s["glu"].shape_out == "[1, 1225, 64]"  # GLU: EVA width 48 -> LM width 64
    assert s["eva"].title == "EVA2-CLIP layers ×2" and s["lm"].title == "language layers ×2"
    assert a.vision_tokens == 1226 and a.image_tokens == 1225  # boi + 1225 image tokens
    assert s["attn_vis"].shape_in == "[1226, 64]"
    assert s["head"].shape_out.endswith("2048]")
    assert a.total_parameters == 644_000


def test_architecture_of_a_construction_only_trace_keeps_its_skeleton() -> None:
    trace = load("real")
    built = dataclasses.replace(trace, events=tuple(e for e in trace.events if e.category == "construction"),
                                meta={})
    a = architecture(built)
    assert a.symbolic and a.stages["eva"].title == "EVA2-CLIP layers ×2"
    # no forward: symbols for input-dependent sizes, widths read from the recorded weights
    assert a.stages["patch"].shape_out == "[B, 48, H/14, W/14]"
    assert a.stages["glu"].shape_out == "[B, N, 64]" and a.stages["head"].shape_out == "[B, S, 2048]"
    assert a.stages["attn_vis"].shape_out == "[V, 192]" and a.stages["mlp_lang"].shape_out == "[T, 176]"
    dot = dot_source(built, "architecture")
    assert "no forward in this trace" in dot and "over all S positions" in dot


@needs_dot
@pytest.mark.parametrize("diagram", DIAGRAMS)
def test_svg_parses_and_png_opens(diagram: str) -> None:
    from PIL import Image

    dot = dot_source(load("real"), diagram)
    root = ET.fromstring(to_svg(dot))
    assert root.tag.endswith("svg")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}g")) > 5
    image = Image.open(io.BytesIO(to_png(dot)))
    image.load()
    assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_unknown_diagram_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        dot_source(load("synthetic"), "pie")
