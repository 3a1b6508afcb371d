"""Reading microscopy images as 8-bit RGB.

Microscopes write greyscale, 16-bit, RGBA and multi-page TIFFs; CLIP wants 8-bit RGB. Every image cellst reads goes
through :func:`load_rgb`, so training, evaluation, search and classification see identical pixels.
"""

from __future__ import annotations

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


def check_image(path: str | Path) -> str | None:
    """Return ``None`` if ``path`` decodes as an image, else a short reason (for reports that list every bad file)."""
    p = Path(path)
    if not p.is_file():
        return "file not found"
    if p.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(p) as im:
            im.load()
            if min(im.size) < 1:
                return f"image has no pixels ({im.size[0]}x{im.size[1]})"
    except Exception as exc:
        return f"does not decode as an image ({type(exc).__name__}: {exc})"
    return None
