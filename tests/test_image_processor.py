"""Image processor against hand-computed values, and every way an image file can be unusable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import png_header_only
from PIL import Image

from tracer.cogvlm.image_processor import CLIP_MEAN, CLIP_STD, ImageProcessor, get_image_processor, open_image
from tracer.errors import UserError


def _normalised(rgb: tuple[int, int, int]) -> list[float]:
    """By hand: x / 255, minus CLIP's mean, over CLIP's std, per channel."""
    return [(v / 255 - m) / s for v, m, s in zip(rgb, CLIP_MEAN, CLIP_STD, strict=True)]


def test_identity_size_hand_computed() -> None:
    image = Image.new("RGB", (2, 2))
    image.putdata([(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 64, 32)])  # row-major: (x, y) = (0,0), (1,0), ...
    out = ImageProcessor(2)(image)
    x = out["image"]
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(_normalised((255, 0, 0))))
    assert torch.allclose(x[0, :, 0, 1], torch.tensor(_normalised((0, 255, 0))))
    assert torch.allclose(x[0, :, 1, 0], torch.tensor(_normalised((0, 0, 255))))
    assert torch.allclose(x[0, :, 1, 1], torch.tensor(_normalised((128, 64, 32))))
    # Red channel of a pure red pixel: (1 - 0.48145466) / 0.26862954
    assert x[0, 0, 0, 0].item() == pytest.approx(1.9303361, abs=1e-6)


def test_bicubic_resize_keeps_a_uniform_colour_and_reaches_the_size() -> None:
    image = Image.new("RGB", (37, 23), (200, 100, 50))
    x = get_image_processor(14)(image)["image"]
    assert x.shape == (1, 3, 14, 14)
    expected = torch.tensor(_normalised((200, 100, 50))).view(3, 1, 1).expand(3, 14, 14)
    assert torch.allclose(x[0], expected, atol=1e-6)


def test_resize_is_pillows_bicubic() -> None:
    """torchvision's Resize on a PIL image is Image.resize(BICUBIC): same bytes, same tensor."""
    image = Image.new("RGB", (20, 10))
    image.putdata([((7 * i) % 256, (13 * i) % 256, (29 * i) % 256) for i in range(200)])
    x = ImageProcessor((6, 8))(image)["image"]  # (height, width)
    ref = image.resize((8, 6), Image.Resampling.BICUBIC)
    r, g, b = ref.getpixel((3, 2))  # type: ignore[misc]
    assert torch.allclose(x[0, :, 2, 3], torch.tensor(_normalised((r, g, b))), atol=1e-6)


def test_grey_and_rgba_become_rgb() -> None:
    grey = ImageProcessor(2)(Image.new("L", (2, 2), 128))["image"]
    assert torch.allclose(grey[0, :, 0, 0], torch.tensor(_normalised((128, 128, 128))))
    rgba = ImageProcessor(2)(Image.new("RGBA", (2, 2), (10, 20, 30, 0)))["image"]
    assert torch.allclose(rgba[0, :, 1, 1], torch.tensor(_normalised((10, 20, 30))))


def test_upstream_extra_inputs() -> None:
    out = ImageProcessor(4)(Image.new("RGB", (4, 4)))
    assert set(out) == {"image", "input_ids", "position_ids", "attention_mask"}
    assert out["input_ids"].tolist() == [[0]] and out["position_ids"] is None
    assert out["attention_mask"].tolist() == [[1]]


# ---------------------------------------------------------------------------------------------
# Unusable files


def test_open_image_ok(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.new("P", (5, 3), 1).save(path)
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (5, 3)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such image file"),
    ("directory", "is a directory"),
    ("empty", r"empty file \(0 bytes\)"),
    ("text", "not an image file"),
    ("truncated", "truncated or corrupt image"),
    ("bomb_ours", "above the limit of 64,000,000"),
    ("bomb_pillow", "refused as a decompression bomb"),
    ("bomb_warning", "refused as a decompression bomb"),
])
def test_open_image_refuses(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / f"{case}.png"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("just some words, not pixels\n")
    elif case == "truncated":
        Image.effect_noise((64, 64), 50).convert("RGB").save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "bomb_ours":
        path.write_bytes(png_header_only(9_000, 9_000))  # 81 Mpx: above our 64, below Pillow's 89
    elif case == "bomb_warning":
        path.write_bytes(png_header_only(10_000, 10_000))  # 100 Mpx: Pillow warns; we refuse
    elif case == "bomb_pillow":
        path.write_bytes(png_header_only(30_000, 30_000))  # 900 Mpx: Pillow itself refuses at open()
    with pytest.raises(UserError, match=message) as info:
        open_image(path)
    assert "\n" not in str(info.value)


def test_open_image_refuses_urls_and_honours_max_pixels(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="URLs are not supported"):
        open_image("https://example.com/cat.png")
    path = tmp_path / "small.png"
    Image.new("RGB", (10, 10)).save(path)
    with pytest.raises(UserError, match="100 pixels, above the limit of 99"):
        open_image(path, max_pixels=99)
