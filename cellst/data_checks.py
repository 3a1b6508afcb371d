"""Checks on what the splits hold, beyond the CSV itself: every image, caption lengths, the batch size.

:mod:`cellst.data` reads and checks the CSV text (columns, labels, paths); this module looks at the content those rows
point to, and at how it fits the model and the batch. A problem that would stop training is a :class:`CellstError`
naming the file, CSV, row and column; one that is harmless but surprising (a 16-bit or transparent image converted as
documented in :mod:`cellst.images`, a tiny image, a caption longer than the model reads) is a warning.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from .errors import CellstError, where
from .images import LOSSY_MODES, SMALL_SIDE, inspect_image

MAX_LISTED = 20  # problems listed in one error message; the rest are counted

CONVERSIONS = {
    "high-bit-depth": "16-bit, 32-bit or float images ({modes}): each is stretched from its own darkest to its "
                      "brightest pixel onto 8-bit 0..255, so brightness is not comparable between images. Convert "
                      "them yourself first if absolute intensity matters.",
    "transparent": "images with transparency ({modes}): transparent pixels become white, like an empty slide.",
}


def check_all_images(splits: dict[str, pd.DataFrame], workers: int = 8) -> None:
    """Decode every distinct image once; list every missing or undecodable one (file, CSV, row) in one error, and
    warn once per kind about images converted with a visible change or too small to show a cell."""
    from tqdm.auto import tqdm

    first_use: dict[str, str] = {}
    for frame in splits.values():
        column = frame.attrs.get("image_column")
        for image, row in zip(frame["image"], frame["row"]):
            first_use.setdefault(image, where(frame.attrs.get("path", "?"), row, column))
    images = list(first_use)
    # Decoding is I/O and C code that releases the GIL, so threads overlap well even on two cores.
    with ThreadPoolExecutor(workers) as pool:
        checks = list(tqdm(pool.map(inspect_image, images), total=len(images), desc="Checking images",
                           disable=len(images) < 500, leave=False))
    bad = [(img, c.problem) for img, c in zip(images, checks) if c.problem]
    if bad:
        lines = [f"  {img}: {why} (first used in {first_use[img]})" for img, why in bad[:MAX_LISTED]]
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise CellstError(f"{len(bad)} of {len(images)} images cannot be used:\n" + "\n".join(lines) + more +
                          "\nFix the paths in the CSV (they are resolved against the CSV's folder, or --image-root), "
                          "or replace or remove those rows, then run again.")
    _warn_small(images, checks, first_use)
    _warn_conversions(images, checks, first_use)


def _warn_small(images, checks, first_use) -> None:
    small = [(img, c.size) for img, c in zip(images, checks) if min(c.size) < SMALL_SIDE]
    if small:
        img, (w, h) = small[0]
        warnings.warn(f"{len(small)} images are smaller than {SMALL_SIDE} pixels on a side, e.g. {img} ({w}x{h} px; "
                      f"{first_use[img]}). They are used, scaled up to the model's input size, but show almost no "
                      "detail: check that they are the cell crops you meant, or remove those rows.", stacklevel=3)


def _warn_conversions(images, checks, first_use) -> None:
    for kind, text in CONVERSIONS.items():
        found = [(img, c.mode) for img, c in zip(images, checks) if LOSSY_MODES.get(c.mode) == kind]
        if found:
            modes = ", ".join(sorted({mode for _, mode in found}))
            warnings.warn(f"{len(found)} " + text.format(modes=f"mode {modes}") +
                          f" First: {found[0][0]} ({first_use[found[0][0]]}).", stacklevel=3)


def warn_long_captions(splits: dict[str, pd.DataFrame], model) -> None:
    """Warn about captions longer than the model reads: they are truncated to their first ``max_seq_length`` tokens
    in training and evaluation alike (sentence-transformers truncates; CLIP's context is 77 tokens)."""
    limit, tokenizer = getattr(model, "max_seq_length", None), getattr(model, "tokenizer", None)
    if not isinstance(limit, int) or not callable(tokenizer) or limit > 100_000:  # no limit, or a stand-in encoder
        return
    for name, frame in splits.items():
        captions = list(dict.fromkeys(frame["caption"]))
        tokens = tokenizer(captions, truncation=False, verbose=False)["input_ids"]
        lengths = frame["caption"].map(dict(zip(captions, map(len, tokens))))
        long = frame[lengths > limit]
        if not long.empty:
            place = where(frame.attrs.get("path", name), column=frame.attrs.get("caption_column"))
            warnings.warn(
                f"{len(long)} captions in the {name} split are longer than the model's {limit}-token context "
                f"({place}, rows {row_list(long['row'].tolist())}; row {long['row'].iloc[0]} has "
                f"{lengths[long.index[0]]} tokens). They are truncated to their first {limit} tokens in training "
                "and evaluation alike, so the rest is never read: shorten them, or split a long caption into "
                "several rows.", stacklevel=2)


def check_batch_size(rows: int, batch_size: int, split: str = "training") -> None:
    """Refuse a batch larger than the data: every epoch would be one short batch, not the batch that was asked for."""
    if batch_size > rows:
        raise CellstError(f"--batch-size {batch_size} is larger than the {rows} {split} examples, so every epoch "
                          f"would be a single batch of {rows}: the learning-rate schedule would get one step per "
                          "epoch, and in-batch losses (MNRL) would never see the batch size you asked for. "
                          f"Use --batch-size {max(2, rows // 2)} or less, or add data.")


def row_list(rows: list[int]) -> str:
    """``3, 7, 9`` for the first ten rows, with the total when there are more."""
    shown = ", ".join(map(str, rows[:10]))
    return shown + (f", ... ({len(rows)} in all)" if len(rows) > 10 else "")
