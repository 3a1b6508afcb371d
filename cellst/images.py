"""Reading microscopy images as 8-bit RGB.

Microscopes write greyscale, 16-bit, RGBA and multi-page TIFFs; CLIP wants 8-bit RGB. Every image cellst reads goes
through :func:`load_rgb`, so training, evaluation, search and classification see identical pixels.

The documented conversions (:func:`to_rgb`): 16-bit, 32-bit and float images are stretched from their own darkest to
their brightest pixel onto 0..255 (so brightness is not comparable between images); transparent pixels (RGBA, LA,
palette with transparency) become white, like an empty slide; greyscale, palette and CMYK convert as PIL converts them.
Images smaller than :data:`SMALL_SIDE` pixels on a side are used, scaled up by the model's processor. The checks in
:func:`cellst.data.check_all_images` warn about the first two kinds and about tiny images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import CellstError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB; high-bit-depth images are rescaled by their own range, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float microscopy images use only part of their range; clipping to 255 would turn them white.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = np.nanmin(arr), np.nanmax(arr)
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "RGBA" or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as on a slide, rather than black.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open ``path`` and return it decoded as 8-bit RGB; raise :class:`CellstError` if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except FileNotFoundError:
        raise CellstError(f"Image not found: {path}.") from None
    except Exception as exc:  # PIL raises many types for bad files; all mean "cannot decode"
        raise CellstError(f"Cannot decode image {path}: {exc}.") from None


SMALL_SIDE = 8  # pixels: smaller than this is a thumbnail or a broken crop, not a cell image
# Conversions that change what the pixels say, so the user hears about them (RGB, greyscale, palette, CMYK do not).
LOSSY_MODES = {
    "I;16": "high-bit-depth", "I;16B": "high-bit-depth", "I;16L": "high-bit-depth", "I": "high-bit-depth",
    "F": "high-bit-depth", "RGBA": "transparent", "LA": "transparent", "PA": "transparent",
}


@dataclass(frozen=True)
class ImageCheck:
    """What :func:`inspect_image` found: ``problem`` is why the file cannot be used (``None`` if it can)."""

    problem: str | None
    size: tuple[int, int] = (0, 0)
    mode: str = ""


def inspect_image(path: str | Path) -> ImageCheck:
    """Decode ``path`` once; return its size and mode, or the reason it cannot be used."""
    p = Path(path)
    if not p.is_file():
        return ImageCheck("file not found")
    if p.stat().st_size == 0:
        return ImageCheck("empty file (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()
            size, mode = im.size, im.mode
            if im.mode == "P" and "transparency" in im.info:
                mode = "PA"
    except Exception as exc:  # PIL raises many types for bad files; all mean "cannot decode"
        return ImageCheck(f"does not decode as an image ({type(exc).__name__}: {exc})")
    if min(size) < 1:
        return ImageCheck(f"image has no pixels ({size[0]}x{size[1]})", size, mode)
    return ImageCheck(None, size, mode)


def check_image(path: str | Path) -> str | None:
    """Return ``None`` if ``path`` decodes as an image, else a short reason (for reports that list every bad file)."""
    return inspect_image(path).problem
