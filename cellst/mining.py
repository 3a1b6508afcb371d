"""Mining hard-negative captions for each training image with the model about to be fine-tuned.

What it is for: MNRL learns most from negatives the model still confuses. For every training image, the captions of the
training split that the starting model ranks highest, excluding the captions the split marks true of that image, become
that image's hard negatives. Each (image, caption) pair yields one row per mined negative, the ``triplet`` format of
sentence-transformers' ``mine_hard_negatives``, so the rows fit MNRL (and cellst's masked MNRL) as ``--hard-negatives``
rows do.
What it is not: a relevance judgement. A caption the split does not mention for an image may still be true of it
(an unannotated descriptor); mined negatives are only as good as the annotation.

Why not ``sentence_transformers.util.mine_hard_negatives``: it groups the anchors by value (``to_pandas().groupby``) to
find each anchor's positives, and a ``datasets.Image`` column reaches pandas as ``{"bytes", "path"}`` dicts, which
cannot be grouped (``TypeError: unhashable type: 'dict'``, checked with sentence-transformers 6.2). Passing image paths
as plain strings instead would work only while sentence-transformers recognises every path as an image file; a path
it does not recognise is silently embedded as text. cellst's own encoder (:func:`cellst.evaluation.encode_split`) embeds
each distinct image and caption once, and a cosine matrix over the caption pool is all that mining needs.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .data import known_true
from .errors import CellstError

log = logging.getLogger("cellst")


def mine_negatives(model, frame: pd.DataFrame, k: int, batch_size: int = 64) -> pd.DataFrame:
    """Rows ``(image, caption, negative, score)``: for each positive pair, the image's ``k`` highest-scoring captions
    of the split that are not known true of that image (:func:`cellst.data.known_true`; fewer when the pool is
    smaller), hardest first."""
    from .evaluation import encode_split

    img_vecs, txt_vecs = encode_split(model, frame, batch_size)
    images, captions = list(img_vecs), list(txt_vecs)
    scores = np.stack([img_vecs[i] for i in images]) @ np.stack([txt_vecs[c] for c in captions]).T
    positives = frame[frame["label"] == 1]
    row_of = {p: i for i, p in enumerate(images)}
    scores[known_true(frame, images, captions)] = -np.inf  # other phrasings of a true value are no negatives either
    hardest = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = []
    for image, caption in zip(positives["image"], positives["caption"]):
        r = row_of[image]
        rows += [(image, caption, captions[j], float(scores[r, j])) for j in hardest[r] if np.isfinite(scores[r, j])]
    return pd.DataFrame(rows, columns=["image", "caption", "negative", "score"])


def mined_view(model, frame: pd.DataFrame, k: int, cache_dir: str | Path | None = None, known=None,
               batch_size: int = 64):
    """A ``datasets.Dataset`` of (image, caption, negative[, label]) rows mined by :func:`mine_negatives`.

    ``known`` (cellst's masked-MNRL table of known positives, when that loss is used) gives each row its id as
    ``label``, exactly as :func:`cellst.pairs.dataset_view` does for the dataset's own negatives.
    """
    import datasets

    from .pairs import rgb_source

    mined = mine_negatives(model, frame, k, batch_size)
    if mined.empty:
        raise CellstError("--mine-negatives found no caption that is not a positive of its image: every caption of "
                          "the training split describes every image. Train without --mine-negatives.")
    _report(mined, frame, k)
    data = {"image": list(mined["image"]), "caption": list(mined["caption"]), "negative": list(mined["negative"])}
    if known is not None:
        data["label"] = [known.register(*row) for row in zip(data["image"], data["caption"], data["negative"])]
    data["image"] = [rgb_source(p, cache_dir) for p in data["image"]]
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "negative": datasets.Value("string"),
                                  **({"label": datasets.Value("int64")} if known is not None else {})})
    return datasets.Dataset.from_dict(data, features=features)


def _report(mined: pd.DataFrame, frame: pd.DataFrame, k: int) -> None:
    pairs = int((frame["label"] == 1).sum())
    short = pairs * k - len(mined)
    if short:
        warnings.warn(f"--mine-negatives {k}: the caption pool gave {len(mined)} negatives for {pairs} pairs "
                      f"({short} fewer than asked); the split has few captions that are not true of each image.",
                      stacklevel=3)
    log.info("Mined %d hard negatives for %d pairs (mean cosine %.3f)", len(mined), pairs, mined["score"].mean())
