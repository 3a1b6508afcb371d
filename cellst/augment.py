"""Image augmentation for microscopy, applied lazily as training images load (PIL and numpy; no torchvision).

What it is for: more variety from few images. A cell on a slide has no up, down, left or right, so every 90-degree
turn and mirror image is as real as the original; small extra rotations, crops, colour and H&E stain jitter are
optional and off by default. Only the training split is augmented; evaluation always sees the original pixels.
What it is not: a general augmentation library. Captions are never changed, so nothing here may alter what a caption
says about the image (no elastic distortion, no scaling beyond the crop).

The augmenter is a ``datasets`` transform (``Dataset.with_transform``): each time the trainer loads a row, the image is
decoded and then augmented, so every epoch sees new variants and nothing is stored. Randomness comes from one generator
per process and data-loader worker, seeded from ``seed``, rank and worker id: the same seed gives the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

# Ruifrok & Johnston's haematoxylin, eosin and DAB optical-density vectors (rows), as in scikit-image's rgb2hed.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


@dataclass(frozen=True)
class AugmentOptions:
    """What to vary. Defaults: the eight right-angle rotations and mirror images, plus up to +-10 degrees."""

    angle: float = 10.0  # largest extra rotation in degrees; corners are filled by mirroring the image
    crop: float = 0.0  # crop keeping at least this fraction of each side (0 = off)
    color: float = 0.0  # brightness, contrast and saturation factors drawn from [1 - color, 1 + color]
    stain: float = 0.0  # H&E stain jitter (Tellez et al. 2018): each stain's density * U(1-s, 1+s) + U(-s, s)
    dihedral: bool = True  # random 90-degree turn and mirror


def augment_image(image: Image.Image, rng: np.random.Generator, o: AugmentOptions = AugmentOptions()) -> Image.Image:
    """One random variant of ``image`` (returned as RGB, possibly a different size after a crop)."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if o.crop:
        image = _crop(image, rng, o.crop)
    if o.dihedral:
        image = image.rotate(90 * int(rng.integers(4)), expand=True)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if o.angle:
        image = _rotate(image, float(rng.uniform(-o.angle, o.angle)))
    if o.color:
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhance(image).enhance(float(rng.uniform(1 - o.color, 1 + o.color)))
    if o.stain:
        image = _stain(image, rng, o.stain)
    return image


def _crop(image: Image.Image, rng: np.random.Generator, keep: float) -> Image.Image:
    """A random crop with the same fraction of each side, so cells keep their proportions."""
    fraction = rng.uniform(keep, 1.0)
    w, h = image.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = int(rng.integers(w - cw + 1)), int(rng.integers(h - ch + 1))
    return image.crop((left, top, left + cw, top + ch))


def _rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate about the centre; the corners the turn uncovers show mirrored tissue rather than black triangles."""
    w, h = image.size
    rad = math.radians(abs(degrees))
    pad = int(math.ceil(max(w, h) * (math.cos(rad) + math.sin(rad) - 1) / 2)) + 1
    arr = np.asarray(image)
    pad = min(pad, w - 1, h - 1)  # reflection cannot reach further than the image itself
    padded = Image.fromarray(np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
    turned = padded.rotate(degrees, resample=Image.Resampling.BILINEAR)
    return turned.crop((pad, pad, pad + w, pad + h))


def _stain(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Perturb haematoxylin, eosin and DAB amounts in optical-density space, as stain batches vary between labs."""
    rgb = np.maximum(np.asarray(image, dtype=np.float64), 1.0) / 255.0
    density = -np.log(rgb) @ HED_FROM_RGB
    alpha = rng.uniform(1 - strength, 1 + strength, 3)
    beta = rng.uniform(-strength, strength, 3)
    out = np.exp(-((density * alpha + beta) @ RGB_FROM_HED))
    return Image.fromarray(np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8))


class ImageAugmenter:
    """A ``datasets`` transform that augments the ``image`` column of each loaded batch (see the module docstring)."""

    def __init__(self, options: AugmentOptions = AugmentOptions(), seed: int = 0, column: str = "image"):
        self.options, self.seed, self.column = options, seed, column
        self._rngs: dict[int, np.random.Generator] = {}

    def __call__(self, batch: dict) -> dict:
        rng = self._rng()
        batch[self.column] = [augment_image(im, rng, self.options) for im in batch[self.column]]
        return batch

    def _rng(self) -> np.random.Generator:
        # Data-loader workers start from copies of this object; without the worker id they would all draw the same
        # "random" variants. Ranks differ too, for the same reason.
        import torch.utils.data

        from .distributed import rank

        info = torch.utils.data.get_worker_info()
        worker = info.id + 1 if info else 0
        if worker not in self._rngs:
            self._rngs[worker] = np.random.default_rng([self.seed, rank(), worker])
        return self._rngs[worker]


def augment_options(cfg) -> AugmentOptions:
    """The options of a :class:`cellst.config.FinetuneConfig` (``--augment-angle``, ``--augment-crop``, ...)."""
    return AugmentOptions(angle=cfg.augment_angle, crop=cfg.augment_crop, color=cfg.augment_color,
                          stain=cfg.augment_stain)


def augment_dataset(dataset, options: AugmentOptions = AugmentOptions(), seed: int = 0):
    """``dataset`` with its images augmented as they load (a ``datasets.Dataset`` the trainer takes as is)."""
    return dataset.with_transform(ImageAugmenter(options, seed))

