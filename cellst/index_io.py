"""Helpers for :mod:`cellst.index` and :mod:`cellst.search`: model identity, pipelined decoding, safe file writes.

What it is for: the parts of indexing that are about files and threads rather than about the index's contents.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import CellstError
from .images import load_rgb

PROBE_TEXT = "a microscopy image of a cell."


def resolve_model(model, model_id: str | None = None):
    """Return ``(model, id)``: load ``model`` if it is a hub id or folder; the id is what ``index.json`` records."""
    from .model import load_model

    if isinstance(model, (str, Path)):
        name = str(model)
        # A local folder is recorded as an absolute path so that `cellst search` finds it from any directory.
        guessed = str(Path(name).resolve()) if Path(name).is_dir() else name
        return load_model(name), model_id or guessed
    return model, model_id or _guess_id(model)


def _guess_id(model) -> str:
    try:
        name = model[0].auto_model.config._name_or_path
    except (AttributeError, IndexError, TypeError, KeyError):
        name = getattr(getattr(model, "model_card_data", None), "base_model", None)
    if not name:
        return "unknown"
    return str(Path(name).resolve()) if Path(name).is_dir() else str(name)


def probe_image():
    """A fixed synthetic image (gradients and a disc) that every model embeds the same way each time."""
    from PIL import Image

    yy, xx = np.mgrid[:64, :64]
    arr = np.stack([xx * 4, yy * 4, (np.hypot(yy - 32, xx - 32) < 20) * 200], axis=-1).astype(np.uint8)
    return Image.fromarray(arr)


def fingerprint(model) -> dict[str, list[float]]:
    """The model's embeddings of a fixed image and a fixed text.

    Two models (or one model before and after fine-tuning in place) give different fingerprints even when their
    names are the same, and one model gives the same fingerprint under a hub id and a local copy.
    """
    from .model import encode_images, encode_texts

    image = encode_images(model, [probe_image()])[0]
    text = encode_texts(model, [PROBE_TEXT])[0]
    return {"image": [round(float(x), 6) for x in image], "text": [round(float(x), 6) for x in text]}


def fingerprints_match(a: dict, b: dict, min_cosine: float = 0.999) -> bool:
    """Equal up to numerical noise (other hardware or batch sizes change the last digits, not the direction)."""
    for key in ("image", "text"):
        u, v = np.asarray(a.get(key, []), float), np.asarray(b.get(key, []), float)
        if u.shape != v.shape or u.size == 0:
            return False
        if float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12) < min_cosine:
            return False
    return True


def check_same_model(meta: dict, model, where: str) -> None:
    """Raise :class:`CellstError` if ``model`` does not embed like the model that built the index at ``where``."""
    if not fingerprints_match(meta["fingerprint"], fingerprint(model)):
        raise CellstError(f"The model given does not embed like '{meta['model']}', which built the index {where}; "
                          "query vectors from another model are meaningless against it. Search with that model "
                          "(leave --model out to use it) or rebuild the index with the new one (`cellst index "
                          "... --rebuild`).")


def decode(path: Path):
    """A decoded RGB image, or the reason it would not decode (a string) so one bad file does not stop a long run."""
    try:
        return load_rgb(path)
    except CellstError as exc:
        return str(exc)


def decoded_batches(items: Sequence, to_path: Callable, batch_size: int, workers: int,
                    ahead: int = 2) -> Iterator[list[tuple]]:
    """Yield ``[(item, image_or_reason), ...]`` batches in order, decoding up to ``ahead`` batches in advance.

    Images decode in ``workers`` threads (PIL releases the GIL while decoding) while the caller encodes the
    current batch; at most ``ahead + 1`` batches are held in memory, whatever the folder's size.
    """
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    if workers <= 0:
        for batch in batches:
            yield [(item, decode(to_path(item))) for item in batch]
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cellst-decode") as pool:
        pending: deque = deque()
        upcoming = iter(batches)

        def submit_next() -> None:
            batch = next(upcoming, None)
            if batch is not None:
                pending.append([(item, pool.submit(decode, to_path(item))) for item in batch])

        for _ in range(ahead + 1):
            submit_next()
        while pending:
            current = pending.popleft()
            submit_next()
            yield [(item, future.result()) for item, future in current]


def sha1_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable) -> None:
    """Write via ``write(binary_file)`` to a temp file beside ``path``, then rename it over ``path``.

    A rename within one folder is atomic, so readers (and a run killed half-way) see the old file or the new one,
    never a torn one. The temp name starts with a dot so an images folder scan would not pick it up.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
