"""Turning checked split frames into the training datasets each loss needs.

sentence-transformers reads dataset columns by position (anchor, positive, negatives...) and takes a column named
``label`` as the target. The image column is a real ``datasets.Image()`` feature: a bare path string would be encoded as
text without any warning. Images are decoded lazily, batch by batch, so memory does not grow with the dataset.

Views:
    ``pairs``     (image, caption) for every positive row: in-batch negatives (MNRL).
    ``triplets``  (image, caption, negative): the image's own negative caption as a hard negative (MNRL).
    ``labelled``  (image, caption, label) for every row: pair-label losses (Contrastive, CosineSimilarity).
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import pandas as pd
from PIL import Image as PILImage

from .errors import CellstError
from .images import to_rgb

VIEWS = ("pairs", "triplets", "labelled")
PLAIN_MODES = {"RGB", "L"}  # modes the CLIP processor converts exactly as cellst.images.to_rgb does


def dataset_view(frame: pd.DataFrame, view: str, cache_dir: str | Path | None = None, seed: int = 0, known=None):
    """Return a ``datasets.Dataset`` with the columns of ``view`` (see the module docstring).

    With ``known`` (a :class:`cellst.masked_mnrl.KnownPositives`), pair and triplet rows get a ``label`` column holding
    their row id, which the masked MNRL loss uses to find the batch's known positives.
    """
    import datasets

    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    if view == "labelled":
        data = {"image": frame["image"], "caption": frame["caption"], "label": frame["label"]}
    else:
        positives = frame[frame["label"] == 1]
        if positives.empty:
            raise CellstError(f"{frame.attrs.get('path', 'The split')} has no positive rows (label 1); "
                              "contrastive training on pairs needs captions that describe their images.")
        data = {"image": positives["image"], "caption": positives["caption"]}
        if view == "triplets":
            data = _with_hard_negatives(frame, positives, seed)
        if known is not None:
            negatives = data.get("negative", [None] * len(data["image"]))
            data["label"] = [known.register(*row) for row in zip(data["image"], data["caption"], negatives)]
    data["image"] = [rgb_source(p, cache_dir) for p in data["image"]]
    label_type = "float32" if view == "labelled" else "int64"
    features = datasets.Features({"image": datasets.Image(), **{
        k: datasets.Value(label_type if k == "label" else "string") for k in data if k != "image"}})
    return datasets.Dataset.from_dict({k: list(v) for k, v in data.items()}, features=features)


def _with_hard_negatives(frame: pd.DataFrame, positives: pd.DataFrame, seed: int) -> dict:
    """Pair each positive with a negative caption of the same image; images without one are left out (with a warning)."""
    negatives = frame[frame["label"] == 0].groupby("image")["caption"].apply(list)
    rows = {"image": [], "caption": [], "negative": []}
    dropped = 0
    counters: dict[str, int] = {}
    for image, caption in zip(positives["image"], positives["caption"]):
        options = negatives.get(image)
        if not options:
            dropped += 1
            continue
        i = counters.get(image, seed)  # cycle through an image's negatives so all of them are used
        counters[image] = i + 1
        rows["image"].append(image)
        rows["caption"].append(caption)
        rows["negative"].append(options[i % len(options)])
    if dropped:
        warnings.warn(f"{dropped} positive rows have no negative caption for their image and are left out of the "
                      "hard-negative dataset.", stacklevel=3)
    if not rows["image"]:
        raise CellstError("Hard negatives were asked for, but no image has a negative row (label 0). "
                          "Add negatives (`cellst prepare --negatives 1`) or train without --hard-negatives.")
    return rows


def distinct_captions(frame: pd.DataFrame) -> int:
    return frame.loc[frame["label"] == 1, "caption"].nunique()


def warn_small_caption_pool(frame: pd.DataFrame, batch_size: int) -> None:
    """MNRL treats every other caption in a batch as a negative, so batches hold no duplicate captions; with fewer
    distinct captions than the batch size, batches shrink and rows are skipped."""
    n = distinct_captions(frame)
    if batch_size > n:
        warnings.warn(f"Batch size {batch_size} exceeds the {n} distinct positive captions in the training split: "
                      f"MNRL batches cannot be filled without duplicate captions, so they will shrink and some rows "
                      f"will be skipped each epoch. Use --batch-size {max(2, n // 2)} or less.", stacklevel=2)


def rgb_source(path: str, cache_dir: str | Path | None = None) -> str:
    """Return ``path``, or for 16-bit, RGBA, CMYK and other unusual images, an 8-bit RGB PNG copy in ``cache_dir``.

    The copy is made once (keyed by path, size and mtime) so training decodes exactly the pixels that
    :func:`cellst.images.load_rgb` gives at evaluation; the CLIP processor's own conversion would clip 16-bit values.
    """
    with PILImage.open(path) as im:
        if im.mode in PLAIN_MODES:
            return path
        stat = Path(path).stat()
        key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
        cache = Path(cache_dir or Path(tempfile.gettempdir()) / "cellst-rgb-cache")
        target = cache / f"{key}.png"
        if not target.exists():
            im.load()
            cache.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp.png")
            to_rgb(im).save(tmp)
            tmp.replace(target)
        return str(target)


def no_duplicates_by_path(dataset, **kwargs):
    """The trainer's NO_DUPLICATES_HASHED batch sampler, comparing images by file path instead of decoded pixels.

    The sampler hashes every row's values once to keep repeated captions and images out of a batch (each would be
    the other's false negative). Hashing pixels decodes every image an extra time, a whole pass over a large dataset;
    a path names the same image just as well. It also hashes the images without any augmentation transform: hashed
    after augmentation, the two rows of one image would look like different images and could share a batch. (The
    trainer accepts a callable as ``batch_sampler``.) Identical pixels stored under two paths count as two images.
    """
    import datasets
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    plain = dataset.with_format(None)
    if "image" in plain.column_names:
        plain = plain.cast_column("image", datasets.Image(decode=False))
    return NoDuplicatesBatchSampler(plain, precompute_hashes=True, **kwargs)
