"""Image-image pairs: two images of one class (label 1) or of two classes (label 0), for ``--pairs image-image``.

What it is for: the CIFAR-10 seed's fine-tuning, on cells. A cosine-based pair loss (``--loss cosine`` or
``contrastive``) pulls images of one cell type together and pushes other types apart; the figure that shows it is the
gap between the mean cosine of same-class and of different-class test images, before and after, beside a heatmap.
What it is not: caption training. The text tower gets no gradient from image pairs, so it is frozen to say so;
text-image recall is still reported, because what the run cost search by text is what a user will ask next.
Pairs are drawn inside each split, so none crosses from one split into another. :data:`PAIRS` is the registry of
``--pairs`` choices; ``image-text`` is the caption rows as each loss reads them (:mod:`cellst.pairs`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sentence_transformers.base.evaluation import BaseEvaluator

from .data import CLASS_COLUMNS
from .errors import CellstError, where
from .evaluation import encode_image_files
from .similarity import similarity_gap


@dataclass(frozen=True)
class PairsSpec:
    summary: str
    losses: tuple[str, ...] | None = None  # losses that train on these pairs; None: any
    job: Callable | None = None  # (FinetuneConfig) -> an object with the hooks training.finetune calls


def get_pairs(name: str) -> PairsSpec:
    if name not in PAIRS:
        raise CellstError(f"Unknown --pairs '{name}'. Expected one of: {', '.join(PAIRS)}.")
    return PAIRS[name]


def check_config(cfg) -> None:
    """The ``--pairs`` options of a :class:`cellst.config.FinetuneConfig` (called by its ``validate``)."""
    spec = get_pairs(cfg.pairs)
    if spec.losses and cfg.loss not in spec.losses:
        raise CellstError(f"--pairs {cfg.pairs} trains on labelled pairs of images: use --loss "
                          f"{' or --loss '.join(spec.losses)} (found --loss {cfg.loss}).")
    if cfg.pairs_per_image < 1 or cfg.negative_ratio <= 0:
        raise CellstError(f"--pairs-per-image must be 1 or more and --negative-ratio above 0; found "
                          f"{cfg.pairs_per_image} and {cfg.negative_ratio}.")
    if spec.job and cfg.augment:
        raise CellstError("--augment does not apply to --pairs image-image yet (it augments the 'image' column of "
                          "caption rows; image pairs have two image columns). Drop --augment for this run.")
    if spec.job and cfg.freeze == "vision":
        raise CellstError("--pairs image-image trains the image tower only; --freeze vision would leave nothing to "
                          "train. Drop --freeze (the text tower is frozen anyway).")


def class_column(csv_path, given: str | None) -> str:
    """The split's class column: ``given``, else the first of :data:`CLASS_COLUMNS` in the header."""
    import pandas as pd

    header = [str(c) for c in pd.read_csv(csv_path, nrows=0).columns]
    found = given if given in header else None if given else next((c for c in CLASS_COLUMNS if c in header), None)
    if found is None:
        wanted = f"a '{given}' column" if given else f"a class column ({' or '.join(CLASS_COLUMNS)})"
        raise CellstError(f"--pairs image-image needs {wanted} in {csv_path} to tell same-class from "
                          f"different-class images; found: {', '.join(header)}. Name the column with "
                          "--class-column, or add one with each image's class.")
    return found


def image_classes(frame, column: str) -> tuple[list[str], list[str]]:
    """The split's distinct images and their classes (a split has many caption rows per image). Every row needs a
    class, and an image has one class: anything else is an error naming file and row."""
    path = frame.attrs.get("path")
    if "class" not in frame:
        raise CellstError(f"{path} has no '{column}' column; image-image pairs need each image's class in every split "
                          "(the column the training split has). Add it, or name another with --class-column.")
    empty = frame.loc[frame["class"].astype(str).str.strip() == "", "row"].tolist()
    if empty:
        raise CellstError(f"{len(empty)} rows have no class in {where(path, column=column)} (first: row {empty[0]}). "
                          "Image-image pairs need every image's class: fill them in or drop those rows.")
    per_image = frame.groupby("image", sort=False)["class"].unique()
    mixed = per_image[per_image.map(len) > 1]
    if len(mixed):
        image = mixed.index[0]
        row = frame.loc[frame["image"] == image, "row"].iloc[0]
        raise CellstError(f"{image} has {len(mixed.iloc[0])} classes ({', '.join(map(str, mixed.iloc[0]))}) in "
                          f"{where(path, row, column)}; an image has one class. Fix the rows of that image.")
    return list(per_image.index), [str(c[0]) for c in per_image]


def build_pairs(images: list[str], classes: list[str], pairs_per_image: int = 2, negative_ratio: float = 1.0,
                seed: int = 0):
    """Labelled image pairs, drawn with ``seed``: each image with up to ``pairs_per_image`` other images of its class
    (label 1), then ``negative_ratio`` times as many pairs of images of two classes (label 0), spread evenly over
    the images (see :func:`_negatives`).

    Returns a frame ``image_a, image_b, label`` in a seeded random order. No image is paired with itself and no pair
    appears twice (in either order).
    """
    import pandas as pd

    if len(set(classes)) < 2:
        raise CellstError(f"Image-image pairs need at least two classes to make different-class pairs; found "
                          f"{sorted(set(classes))} among {len(images)} images.")
    rng = np.random.default_rng(seed)
    labels = np.asarray(classes)
    seen: set[tuple[int, int]] = set()
    positives = _positives(labels, rng, pairs_per_image, seen)
    if not positives:
        raise CellstError("No class has two images, so there is no same-class pair to learn from. Image-image "
                          "training needs at least two images of some class in the training split.")
    negatives = _negatives(labels, rng, max(1, round(len(positives) * negative_ratio)), seen)
    rows = [(images[i], images[j], label) for label, drawn in ((1.0, positives), (0.0, negatives)) for i, j in drawn]
    pairs = pd.DataFrame(rows, columns=["image_a", "image_b", "label"])
    return pairs.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _keep(i: int, j: int, seen: set) -> bool:
    key = (min(i, j), max(i, j))  # (a, b) and (b, a) are one pair: the losses are symmetric
    if key in seen:
        return False
    seen.add(key)
    return True


def _positives(labels: np.ndarray, rng, per_image: int, seen: set) -> list[tuple[int, int]]:
    """Up to ``per_image`` classmates for each image (fewer when its class is small or a pair was drawn already)."""
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    position = np.empty(len(labels), int)  # each image's place among its classmates
    for m in members.values():
        position[m] = np.arange(len(m))
    drawn = []
    for i, c in enumerate(labels):
        m = members[c]
        # Draw from the class without the image itself: places past its own shift by one. O(per_image) per image.
        for p in rng.choice(len(m) - 1, min(per_image, len(m) - 1), replace=False):
            j = int(m[p + (p >= position[i])])
            if _keep(i, j, seen):
                drawn.append((i, j))
    return drawn


def _negatives(labels: np.ndarray, rng, wanted: int, seen: set) -> list[tuple[int, int]]:
    """``wanted`` pairs of images of two classes, one per image per round over the images in a seeded order, so no
    image starts more than ``ceil(wanted / n)``. An image whose draws keep hitting pairs already taken sits a round out,
    so the total can fall short when most different-class pairs are taken already (a tiny split, a high ratio)."""
    drawn: list[tuple[int, int]] = []
    order = rng.permutation(len(labels))
    for _ in range(-(-wanted // len(labels))):
        for i in order:
            for _attempt in range(20):
                j = int(rng.integers(len(labels)))
                if labels[j] != labels[i] and _keep(int(i), j, seen):  # rejection: cheap unless one class dominates
                    drawn.append((int(i), j))
                    break
            if len(drawn) == wanted:
                return drawn
    return drawn


def pairs_dataset(pairs, cache_dir=None):
    """A ``datasets.Dataset`` (``image_a``, ``image_b``: ``datasets.Image()``; ``label``: float) for the trainer."""
    import datasets

    from .pairs import rgb_source

    # Real Image features: a bare path string would be encoded as text without a warning (see cellst.pairs).
    sources = {p: rgb_source(p, cache_dir) for p in set(pairs["image_a"]) | set(pairs["image_b"])}
    features = datasets.Features({"image_a": datasets.Image(), "image_b": datasets.Image(),
                                  "label": datasets.Value("float32")})
    return datasets.Dataset.from_dict({"image_a": [sources[p] for p in pairs["image_a"]],
                                       "image_b": [sources[p] for p in pairs["image_b"]],
                                       "label": pairs["label"].tolist()}, features=features)


class ImageGapEvaluator(BaseEvaluator):
    """The same-vs-different-class gap on the val split each epoch; it picks the best checkpoint (``--keep-best``)."""

    def __init__(self, images: list[str], classes: list[str], split: str = "val", batch_size: int = 64):
        super().__init__()
        self.images, self.classes, self.split, self.batch_size = images, classes, split, batch_size
        self.primary_metric = f"{split}_image_gap"
        self.history: list[dict] = []

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        figures = similarity_gap(encode_image_files(model, self.images, self.batch_size), self.classes)
        # "records" stays empty so readers of val_history that look for recall records find none, not a wrong one.
        self.history.append({"epoch": epoch, "step": steps, "records": [], "image_similarity": figures})
        return {f"{self.split}_image_{k}": figures[k] for k in ("same", "different", "gap")}


class ImagePairsJob:
    """The image-image parts of one finetune run: :func:`cellst.training.finetune` calls these hooks in its steps.

    ``cfg`` is the run's configuration as resolved here: the class column found, the text tower frozen (image pairs
    never reach it; frozen, the trainable count is honest and DDP waits for no gradient), both written to the run's
    ``cellst_config.yaml``.
    """

    HEATMAP_IMAGES = 48  # at most this many test images in the heatmap, an equal share per class

    def __init__(self, cfg):
        # Read from the header before any folder is written or model loaded, so a missing column fails at once.
        self.cfg = dataclasses.replace(cfg, class_column=class_column(cfg.train, cfg.class_column),
                                       freeze=cfg.freeze or "text")
        self.class_column = self.cfg.class_column
        self.vectors: dict[str, np.ndarray] = {}

    def datasets(self, splits: dict, cache_dir) -> tuple:
        """Train and val datasets of image pairs (val ``None`` without a val split); sets ``self.evaluator``, the val
        gap each epoch."""
        self.classes = {name: image_classes(frame, self.class_column) for name, frame in splits.items()}
        built = {name: self._pairs(name, splits[name]) for name in ("train", "val") if name in splits}
        self.counts = {name: {"positive": int((p["label"] == 1).sum()), "negative": int((p["label"] == 0).sum())}
                       for name, p in built.items()}
        if self.counts["train"]["negative"] < self.counts["train"]["positive"] / 2:
            warnings.warn(f"Only {self.counts['train']['negative']} different-class pairs against "
                          f"{self.counts['train']['positive']} same-class ones: pair losses collapse when negatives "
                          "are scarce. Raise --negative-ratio.", stacklevel=2)
        val = built.get("val")
        self.evaluator = ImageGapEvaluator(*self.classes["val"], batch_size=self.cfg.eval_batch_size) \
            if val is not None else None
        return pairs_dataset(built["train"], cache_dir), pairs_dataset(val, cache_dir) if val is not None else None

    def _pairs(self, name: str, frame):
        try:
            return build_pairs(*self.classes[name], self.cfg.pairs_per_image, self.cfg.negative_ratio, self.cfg.seed)
        except CellstError as exc:
            raise CellstError(f"The {name} split ({frame.attrs.get('path')}): {exc}") from None

    def measure(self, model, splits: dict, which: str, metrics: dict) -> None:
        """Same/different-class figures of the test split into ``metrics["image_similarity"][which]``."""
        if "test" not in splits:
            return
        images, classes = self.classes["test"]
        self.vectors[which] = encode_image_files(model, images, self.cfg.eval_batch_size)
        figures = similarity_gap(self.vectors[which], classes)
        metrics.setdefault("image_similarity", {"split": "test", "class_column": self.class_column,
                                                "pairs": self.counts})[which] = figures
        print(f"Test split {which} training: image-image cosine same-class {_fmt(figures['same'])}, "
              f"different-class {_fmt(figures['different'])}, gap {_fmt(figures['gap'])}")
        if which == "after":
            self.draw(splits, metrics, Path(self.cfg.output))

    def draw(self, splits: dict, metrics: dict, out: Path) -> Path | None:
        """``figures/image_similarity.png``: before and after heatmaps on one colour scale, images sorted by class."""
        from . import plots
        from .similarity import class_matrix

        frame = splits["test"]
        images = self.classes["test"][0]
        panels = []
        for which, vectors in self.vectors.items():
            figures = metrics["image_similarity"][which]
            per_class = max(2, self.HEATMAP_IMAGES // figures["n_classes"])
            panel = class_matrix(frame, dict(zip(images, vectors)), per_class=per_class)
            title = (f"{which} training: same-class {_fmt(figures['same'], 2)}, different "
                     f"{_fmt(figures['different'], 2)}, gap {_fmt(figures['gap'], 2)}\n"
                     f"(means over all {figures['n_images']} test images)")
            if panel is not None:  # None: fewer than two classes in the test split
                panels.append({"title": title, **panel})
        try:
            return plots.heatmaps(panels, out / "figures" / "image_similarity.png", "image", "image") if panels else None
        except CellstError as exc:  # no matplotlib: the figures are in metrics.json; a picture is not worth a failure
            warnings.warn(f"The image-image heatmap was not drawn: {exc}", stacklevel=2)
            return None


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


PAIRS: dict[str, PairsSpec] = {
    "image-text": PairsSpec("each image with the captions of its rows, as the loss reads them (cellst.pairs)"),
    "image-image": PairsSpec("two images of one class (label 1) or of two classes (label 0), from a class column",
                             losses=("cosine", "contrastive"), job=ImagePairsJob),
}


def start(cfg) -> tuple:
    """``(cfg, hooks)`` for a finetune run: the hooks of ``cfg.pairs`` and the configuration they resolved, or
    ``(cfg, None)`` when the caption rows train as they are."""
    job = get_pairs(cfg.pairs).job
    if job is None:
        return cfg, None
    hooks = job(cfg)
    return hooks.cfg, hooks
