"""Cell classification with an image-text model: zero-shot, linear probe, and both fused, side by side.

What it is for: measuring how well a (fine-tuned) CLIP's embeddings separate cell classes, in the manner of
CLIVP-Cervix (class descriptions, 10-fold cross-validation). What it is not: training the CLIP itself (``cellst
finetune`` does that); only a logistic regression is fitted here.

Methods (:data:`METHODS`):

=============  =====================================================================================================
``zero_shot``  each image gets the class whose description embedding is most similar to it (nothing is fitted)
``probe``      logistic regression on the normalised image embeddings, cross-validated (stratified k-fold)
``fused``      the same on the image embeddings plus the image's cosine similarity to each class description
=============  =====================================================================================================

Example::

    from cellst.classify import classify
    result = classify("cervix/", "my-finetuned-clip/", descriptions="descriptions.yaml", out_dir="report/")
    print(result["methods"]["fused"]["accuracy"])
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .classify_data import load_descriptions, load_labelled_images
from .classify_report import format_table, method_report, write_confusion
from .errors import CellstError
from .index_io import decoded_batches, resolve_model

__all__ = ["classify", "class_embeddings", "format_table", "METHODS"]


@dataclass
class Features:
    """What every method sees: unit image embeddings, their similarity to each class description, the labels."""

    image: np.ndarray  # (n, dim)
    sims: np.ndarray  # (n, n_classes), columns in the order of ``classes``
    labels: np.ndarray  # (n,) class names
    classes: list[str]


def zero_shot(features: Features, cv) -> np.ndarray:
    return np.asarray(features.classes)[features.sims.argmax(axis=1)]


def probe(features: Features, cv) -> np.ndarray:
    return _cross_val_predict(features.image, features.labels, cv)


def fused(features: Features, cv) -> np.ndarray:
    return _cross_val_predict(np.hstack([features.image, features.sims]), features.labels, cv)


METHODS = {"zero_shot": zero_shot, "probe": probe, "fused": fused}


def _cross_val_predict(x: np.ndarray, y: np.ndarray, cv) -> np.ndarray:
    """Out-of-fold predictions of a standardised logistic regression.

    Standardising first matters: the components of a unit vector in 512 dimensions are ~0.04, which default L2
    regularisation would shrink to nothing, and it puts the few similarity columns of ``fused`` on the same scale.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), x, y, cv=cv)


def classify(data, model, descriptions=None, folds: int = 10, seed: int = 0, fuse: bool = True, out_dir=None,
             class_column: str = "class", image_column: str = "image_path", batch_size: int = 64,
             progress: bool = True) -> dict:
    """Classify labelled images three ways and report accuracy, macro precision/recall/F1 and confusion matrices.

    Args:
        data: a folder with one subfolder per class (``root/CLASS/*.png``), or a CSV with ``image_column`` (paths
            relative to the CSV's folder) and ``class_column``.
        model: a loaded image-text SentenceTransformer, or a hub id / folder.
        descriptions: JSON/YAML file or dict, class -> description or list of descriptions (their normalised
            embeddings are averaged); ``None`` uses "a microscopy image of a {class} cell.".
        folds: cross-validation folds for the probe (reduced, with a warning, to the size of the smallest class).
        seed: shuffles the folds.
        fuse: also run the fused method.
        out_dir: if given, ``classification.json``, ``predictions.csv`` and ``confusion_<method>.csv/.png`` go here.

    Returns:
        The contents of ``classification.json``: ``methods`` maps each method to its metrics (see
        :func:`cellst.classify_report.method_report`), beside ``classes``, ``folds``, ``majority_accuracy`` etc.
    """
    from sklearn.model_selection import StratifiedKFold

    # 1. Data: labelled images, fold count, descriptions.
    paths, labels = load_labelled_images(data, class_column, image_column)
    classes = sorted(set(labels))
    texts = load_descriptions(descriptions, classes)
    folds = _fold_count(labels, classes, folds)
    # 2. Features from the model.
    model, model_id = resolve_model(model)
    features = _features(model, paths, labels, classes, texts, batch_size, progress)
    # 3. Predictions, one per method; every method is scored on all images.
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predictions = {name: fn(features, cv) for name, fn in METHODS.items() if fuse or name != "fused"}
    # 4. Report.
    result = _result(features, predictions, cv, data, model_id, folds, seed, texts)
    if out_dir is not None:
        _write(result, predictions, paths, labels, Path(out_dir))
    return result


def _fold_count(labels: list[str], classes: list[str], folds: int) -> int:
    counts = pd.Series(labels).value_counts()
    if len(classes) < 2:
        raise CellstError(f"Classification needs at least 2 classes; found only {classes or 'none'}.")
    if folds < 2:
        raise CellstError(f"folds must be at least 2 (found {folds}).")
    smallest, size = counts.idxmin(), int(counts.min())
    if size < 2:
        raise CellstError(f"Class '{smallest}' has only {size} image; the cross-validated probe needs at least 2 per "
                          "class (one to train on, one to test). Add images or leave the class out.")
    if size < folds:
        warnings.warn(f"Class '{smallest}' has only {size} images, fewer than the {folds} folds asked for; using "
                      f"{size}-fold cross-validation so that every fold holds each class.", stacklevel=3)
    return min(folds, size)


def _features(model, paths, labels, classes, texts, batch_size: int, progress: bool) -> Features:
    image = _encode_paths(model, paths, batch_size, progress)
    return Features(image, image @ class_embeddings(model, texts, classes).T, np.asarray(labels), classes)


def class_embeddings(model, descriptions: dict[str, list[str]], classes: list[str]) -> np.ndarray:
    """One unit vector per class, in the order of ``classes``: the renormalised mean of its descriptions' unit
    embeddings, i.e. the class's mean direction (a long description does not outweigh a short one)."""
    from .model import encode_texts

    vectors = []
    for cls in classes:
        mean = encode_texts(model, descriptions[cls]).mean(axis=0)
        vectors.append(mean / (np.linalg.norm(mean) + 1e-12))
    return np.stack(vectors).astype(np.float32)


def _encode_paths(model, paths: list[Path], batch_size: int, progress: bool) -> np.ndarray:
    """Unit image embeddings; every unreadable file is listed in one error rather than stopping at the first."""
    from tqdm.auto import tqdm

    from .model import encode_images

    parts, bad = [], []
    with tqdm(total=len(paths), desc="Embedding images", unit="img", disable=not progress) as bar:
        for batch in decoded_batches(paths, lambda p: p, batch_size, workers=2):
            bad += [reason for _, reason in batch if isinstance(reason, str)]
            if not bad:
                parts.append(encode_images(model, [im for _, im in batch], batch_size=batch_size))
            bar.update(len(batch))
    if bad:
        raise CellstError(f"{len(bad)} image(s) could not be read: {' '.join(bad[:5])} Fix or remove them.")
    return np.concatenate(parts).astype(np.float32)


def _result(features: Features, predictions: dict, cv, data, model_id: str, folds: int, seed: int,
            texts: dict) -> dict:
    from sklearn.metrics import accuracy_score

    y = features.labels
    methods = {name: method_report(y, pred, features.classes) for name, pred in predictions.items()}
    for name in set(predictions) - {"zero_shot"}:
        fold_acc = [accuracy_score(y[test], predictions[name][test]) for _, test in cv.split(features.image, y)]
        methods[name]["fold_accuracy"] = {"mean": float(np.mean(fold_acc)), "std": float(np.std(fold_acc)),
                                          "folds": [float(a) for a in fold_acc]}
    counts = pd.Series(y).value_counts()
    return {"data": str(data), "model": model_id, "n_images": len(y), "classes": features.classes,
            "class_counts": {c: int(counts[c]) for c in features.classes}, "folds": folds, "seed": seed,
            "majority_accuracy": float(counts.max() / len(y)), "descriptions": texts, "methods": methods}


def _write(result: dict, predictions: dict, paths: list[Path], labels: list[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classification.json").write_text(json.dumps(result, indent=2))
    table = pd.DataFrame({"image": [str(p) for p in paths], "class": labels, **predictions})
    table.to_csv(out_dir / "predictions.csv", index=False)
    for name, report in result["methods"].items():
        write_confusion(report, result["classes"], out_dir, name)
