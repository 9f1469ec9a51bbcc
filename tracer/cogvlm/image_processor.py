"""Open an image safely and turn it into the tensor CogVLM's vision tower expects.

Upstream (``utils/utils/vision.py``) uses torchvision: ``Resize((s, s), BICUBIC)``,
``ToTensor()``, ``Normalize(CLIP mean, CLIP std)``. torchvision does not import beside the
CPU torch used here, so this module does the same with Pillow and torch:
for a PIL image torchvision's resize *is* ``Image.resize(..., BICUBIC)``, and ``ToTensor``
is ``uint8 HWC -> float CHW / 255``.

The processor returns upstream's dict: ``image`` (1, 3, H, W) plus the dummy
``input_ids`` / ``position_ids`` / ``attention_mask`` the vision tower's SAT transformer
requires as arguments (EVA builds its own sequence from the image). ``chat()`` passes them
on as ``vision_*`` keyword arguments.

:func:`open_image` turns every way a file can be unusable — missing, a directory, empty,
not an image, truncated, a decompression bomb — into a one-line :class:`UserError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import UserError

__all__ = ["CLIP_MEAN", "CLIP_STD", "MAX_IMAGE_PIXELS", "ImageProcessor", "get_image_processor", "open_image"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# 64 megapixels (8000 x 8000): far above any photo CogVLM needs (it sees 490 x 490), far
# below what would exhaust memory when decoded. Pillow's own limit (~89 Mpx warns, ~179 Mpx
# fails) is a process-wide global we leave alone; we check our own limit per file.
MAX_IMAGE_PIXELS = 64_000_000


def open_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open, fully decode and convert to RGB; raise :class:`UserError` with one line if unusable."""
    text = str(path)
    if text.startswith(("http://", "https://")):
        raise UserError(f"{text}: URLs are not supported (no network access); download the image and pass its path")
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such image file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes), expected an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) between its two limits: treat that as a bomb too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise UserError(f"{path}: {width}x{height} = {width * height:,} pixels, above the limit of "
                                    f"{max_pixels:,} (possible decompression bomb)")
                im.load()  # decode now: a truncated file fails here, not later in the model
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(f"{path}: refused as a decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise UserError(f"{path}: not an image file Pillow can read") from e
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow reports truncated or corrupt data as OSError (sometimes SyntaxError/ValueError).
        raise UserError(f"{path}: truncated or corrupt image ({e})") from e


class ImageProcessor:
    """RGB -> bicubic resize to (size, size) -> [0, 1] -> CLIP normalisation -> (1, 3, H, W)."""

    def __init__(self, image_size: int | tuple[int, int], mean: tuple[float, ...] = CLIP_MEAN,
                 std: tuple[float, ...] = CLIP_STD) -> None:
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size {image_size!r}: expected positive pixel sizes")
        self.size = (height, width)
        self.mean = torch.tensor(mean).view(3, 1, 1)  # (3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)  # (3, 1, 1)

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """The normalised (3, H, W) float tensor of ``image``."""
        height, width = self.size
        resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)  # (H*W*3,)
        x = pixels.view(height, width, 3).permute(2, 0, 1).float() / 255.0  # (3, H, W) in [0, 1]
        return (x - self.mean) / self.std  # (3, H, W)

    def __call__(self, image: Image.Image) -> dict[str, Any]:
        return {
            "image": self.to_tensor(image).unsqueeze(0),  # (1, 3, H, W)
            "input_ids": torch.zeros(1, 1, dtype=torch.long),  # (1, 1) placeholder for EVA's transformer
            "position_ids": None,
            "attention_mask": torch.ones(1, 1, dtype=torch.long),  # (1, 1)
        }


def get_image_processor(image_size: int | Sequence[int]) -> ImageProcessor:
    """Upstream's entry point name. ``image_size`` is a config's ``eva_args['image_size']`` as
    it stands (``[height, width]``; pass all of it, a tower need not be square) or one side."""
    return ImageProcessor(image_size if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1])))
