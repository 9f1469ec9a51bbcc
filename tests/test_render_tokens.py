"""The token-layout strip: segments, masks, the picture, and bad layouts."""

from __future__ import annotations

import io

import pytest
from fixtures.render_support import load

from tracer.cogvlm.tokens import LayoutError, layout_png, layout_segments


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_segments_follow_cogvlms_layout(kind: str) -> None:
    segs = layout_segments(load(kind))
    roles = [s.role for s in segs]
    assert roles[:4] == ["BOS", "boi", "image", "eoi"] and set(roles[4:]) == {"text"}
    bos, boi, image, eoi = segs[:4]
    assert image.count == 1225 and image.piece_text == "<image> ×1225"
    # image_embed_mask covers boi..eoi, vision_expert_mask boi..image, image_rope_mask the image only
    assert [s.masks for s in (bos, boi, image, eoi)] == [(0, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 0)]
    assert image.position_text == "2 (all)"  # every image token shares one rotary position id
    assert (bos.positions[0], boi.positions[0], eoi.positions[0]) == (0, 1, 3)
    assert all(s.masks == (0, 0, 0) for s in segs[4:])


def test_png_is_a_real_picture() -> None:
    from PIL import Image

    data = layout_png(load("real"), max_width=1200)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.width <= 1200 and image.height > 200
    assert len(image.convert("RGB").getcolors(1 << 16) or []) > 10  # not blank


def test_long_prompts_wrap_into_bands() -> None:
    from PIL import Image

    layout = {k: list(v) for k, v in load("synthetic").meta["token_layout"].items()}
    n = 120  # a long question: 120 more text tokens, each its own cell
    start = layout["position_ids"][-1] + 1
    layout["tokens"] += [100 + i for i in range(n)]
    layout["pieces"] += [f"▁w{i}" for i in range(n)]
    for mask in ("image_embed_mask", "vision_expert_mask", "image_rope_mask"):
        layout[mask] += [0] * n
    layout["position_ids"] += list(range(start, start + n))
    narrow = Image.open(io.BytesIO(layout_png(layout, max_width=900)))
    assert narrow.width <= 900 and narrow.height > 600  # several bands


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("pieces"), "lacks"),
    (lambda d: d.__setitem__("image_rope_mask", [0]), "lengths differ"),
])
def test_bad_layouts_are_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    layout = dict(load("synthetic").meta["token_layout"])
    change(layout)
    with pytest.raises(LayoutError, match=message):
        layout_segments(layout)


def test_trace_without_layout() -> None:
    import dataclasses

    with pytest.raises(LayoutError, match="no meta"):
        layout_segments(dataclasses.replace(load("synthetic"), meta={}))
