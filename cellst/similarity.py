"""Embedding-similarity figures on the labelled pairs, and zero-shot cell-type accuracy.

What it is for: the figures the thesis reported beside recall. Every labelled row (image, caption, 0/1) is a pair;
the cosine of its two embeddings is correlated with the label (Pearson, Spearman) and used as a classifier with the
best threshold (accuracy, F1, average precision). What it is not: retrieval; ranking figures live in
:mod:`cellst.retrieval`.

The figures come from sentence-transformers' own ``EmbeddingSimilarityEvaluator`` and ``BinaryClassificationEvaluator``.
Both normally encode their inputs with a model; here they look up the vectors :func:`cellst.evaluation.encode_split`
already made (one small override of ``embed_inputs``), so each image is encoded once per report and the figures are
exactly the library's. Thresholds are cosine similarities, chosen on the evaluated split itself, so accuracy and F1 are
optimistic upper bounds, as in the library.

Zero-shot: each image is scored against one caption per class (``template`` with ``{class}`` filled in); the class
whose caption is nearest is the prediction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sentence_transformers.sentence_transformer.evaluation import (BinaryClassificationEvaluator,
                                                                   EmbeddingSimilarityEvaluator)

from .data import known_true

DEFAULT_TEMPLATE = "a microscopy image of a {class} cell."
BINARY_KEYS = ("accuracy", "accuracy_threshold", "f1", "f1_threshold", "precision", "recall", "ap", "mcc")


class _Precomputed:
    """Evaluator mixin: embeddings come from ``lookup`` instead of a model."""

    lookup: dict

    def embed_inputs(self, model, sentences, **kwargs):
        return np.stack([self.lookup[s] for s in sentences])

    def store_metrics_in_model_card_data(self, *args, **kwargs):
        pass  # there is no model whose card could hold them


class _PairSimilarity(_Precomputed, EmbeddingSimilarityEvaluator):
    pass


class _PairClassification(_Precomputed, BinaryClassificationEvaluator):
    pass


def pair_similarity(frame: pd.DataFrame, image_vecs: dict, text_vecs: dict) -> dict:
    """Pearson/Spearman of cosine(image, caption) with the label, and best-threshold classification figures.

    Labels in (0, 1) (the cosine loss's graded labels) enter the correlations as they are and the classification
    rounded at 0.5. ``chance`` holds what a figure is without the model: majority-class accuracy, F1 of calling every
    pair positive, and AP of a random score (the positive rate).
    """
    labels = frame["label"].astype(float).to_numpy()
    binary = (labels >= 0.5).astype(int)
    out = {"n_pairs": int(len(labels)), "n_positive": int(binary.sum()), "n_negative": int((1 - binary).sum())}
    rate = binary.mean() if len(binary) else 0.0
    out["chance"] = {"accuracy": float(max(rate, 1 - rate)), "f1": float(2 * rate / (1 + rate)), "ap": float(rate)}
    if out["n_positive"] == 0 or out["n_negative"] == 0:
        out["note"] = "only one label value in the split: correlations and thresholds are undefined"
        return out
    images = ["image:" + p for p in frame["image"]]
    captions = ["text:" + c for c in frame["caption"]]
    lookup = {**{"image:" + k: v for k, v in image_vecs.items()}, **{"text:" + k: v for k, v in text_vecs.items()}}
    similarity = _PairSimilarity(images, captions, labels.tolist(), similarity_fn_names=["cosine"], write_csv=False)
    similarity.lookup = lookup
    correlations = similarity(None)
    classification = _PairClassification(images, captions, binary.tolist(), similarity_fn_names=["cosine"],
                                         write_csv=False)
    classification.lookup = lookup
    figures = classification.compute_metrics(None)["cosine"]
    out["pearson"] = float(correlations["pearson_cosine"])
    out["spearman"] = float(correlations["spearman_cosine"])
    out.update({key: float(figures[key]) for key in BINARY_KEYS})
    return out


def image_classes(frame: pd.DataFrame) -> dict[str, str]:
    """Each image's class (its first non-empty ``class`` value); empty when the frame has no class column."""
    if "class" not in frame:
        return {}
    rows = frame[frame["class"].astype(str).str.strip() != ""]
    return dict(zip(rows.drop_duplicates("image")["image"], rows.drop_duplicates("image")["class"].astype(str)))


def class_prompts(classes, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One caption per class, e.g. ``a microscopy image of a lymphocyte cell.``"""
    return [template.replace("{class}", c) for c in classes]


def zero_shot_figures(image_vecs: np.ndarray, truth: list[str], class_vecs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy of predicting ``truth`` by the nearest class vector (unit vectors, so the dot product is the cosine).

    A tie goes to the class listed first. ``balanced_accuracy`` is the mean of the per-class accuracies;
    both have chance level ``1 / n_classes`` for a guess that ignores the image.
    """
    predicted = np.asarray(classes)[np.argmax(np.asarray(image_vecs) @ np.asarray(class_vecs).T, axis=1)]
    truth = np.asarray(truth)
    per_class = {c: {"n": int((truth == c).sum()),
                     "accuracy": float((predicted[truth == c] == c).mean()) if (truth == c).any() else None}
                 for c in classes}
    present = [v["accuracy"] for v in per_class.values() if v["accuracy"] is not None]
    confusion = [[int(((truth == t) & (predicted == p)).sum()) for p in classes] for t in classes]
    return {"n_images": int(len(truth)), "n_classes": len(classes), "accuracy": float((predicted == truth).mean()),
            "balanced_accuracy": float(np.mean(present)), "chance": 1.0 / len(classes), "classes": list(classes),
            "per_class": per_class, "confusion": confusion}


def zero_shot(model, frame: pd.DataFrame, image_vecs: dict, template: str = DEFAULT_TEMPLATE) -> dict | None:
    """Zero-shot cell-type figures of ``model`` on the split, or ``None`` when it has no classes (or only one)."""
    from .model import encode_texts

    truth = image_classes(frame)
    classes = sorted(set(truth.values()))
    if len(classes) < 2:
        return None
    class_vecs = encode_texts(model, class_prompts(classes, template))
    images = list(truth)
    figures = zero_shot_figures(np.stack([image_vecs[i] for i in images]), [truth[i] for i in images],
                                class_vecs, classes)
    return {"template": template, **figures}


def pair_matrix(frame: pd.DataFrame, image_vecs: dict, text_vecs: dict, n: int = 10, seed: int = 0) -> dict:
    """Cosine of ``n`` sampled positive pairs' captions (rows) against their images (columns).

    Pairs are drawn one per image, preferring captions not drawn yet, so the diagonal holds the true pairs and the
    off-diagonal cells are other images. ``marks`` lists every cell whose caption the split says is true of that
    image (:func:`cellst.data.known_true`: the diagonal, plus template captions true of several images).
    """
    positives = frame[frame["label"] == 1].sample(frac=1.0, random_state=seed)
    chosen, seen_images, seen_captions = [], set(), set()
    for fresh_only in (True, False):
        for image, caption in zip(positives["image"], positives["caption"]):
            if len(chosen) < n and image not in seen_images and (caption not in seen_captions or not fresh_only):
                chosen.append((image, caption))
                seen_images.add(image), seen_captions.add(caption)
    images, captions = [i for i, _ in chosen], [c for _, c in chosen]
    matrix = np.stack([text_vecs[c] for c in captions]) @ np.stack([image_vecs[i] for i in images]).T
    true = known_true(frame, images, captions)
    marks = [(r, c) for r in range(len(captions)) for c in range(len(images)) if true[c, r]]
    return {"matrix": matrix, "row_labels": captions, "col_labels": images, "marks": marks}


def similarity_gap(vectors: np.ndarray, classes: list[str]) -> dict:
    """Mean cosine of same-class and of different-class pairs of distinct images (unit ``vectors``), each unordered
    pair once, and their difference (``gap``)."""
    labels = np.asarray(classes)
    upper = np.triu(np.ones((len(labels), len(labels)), bool), k=1)
    same = (labels[:, None] == labels[None, :]) & upper
    different = (labels[:, None] != labels[None, :]) & upper
    cosine = np.asarray(vectors) @ np.asarray(vectors).T
    out = {"same": float(cosine[same].mean()) if same.any() else None,
           "different": float(cosine[different].mean()) if different.any() else None}
    out["gap"] = out["same"] - out["different"] if None not in out.values() else None
    return {**out, "n_images": len(labels), "n_classes": len(set(classes)),
            "n_same_pairs": int(same.sum()), "n_different_pairs": int(different.sum())}


def class_matrix(frame: pd.DataFrame, image_vecs: dict, per_class: int = 6) -> dict | None:
    """Image-image cosine for up to ``per_class`` images of each class, sorted by class; ``None`` without classes."""
    truth = image_classes(frame)
    classes = sorted(set(truth.values()))
    if len(classes) < 2:
        return None
    images, groups = [], []
    for c in classes:
        members = [i for i, k in truth.items() if k == c][:per_class]
        groups.append((c, len(images), len(images) + len(members)))
        images += members
    vectors = np.stack([image_vecs[i] for i in images])
    return {"matrix": vectors @ vectors.T, "row_labels": images, "col_labels": images, "groups": groups}


def top_images(frame: pd.DataFrame, image_vecs: dict, text_vecs: dict, n: int = 4, k: int = 5) -> list[dict]:
    """The ``k`` nearest images to ``n`` positive captions (one per descriptor first, for variety), for a retrieval grid.

    Returns ``[{"query", "hits": [{"image", "score", "correct"}]}]``; a hit is correct when the split says the caption
    is true of that image (:func:`cellst.data.known_true`, as the ``caption`` relevance rule counts).
    """
    positives = frame[frame["label"] == 1]
    by_descriptor = positives.drop_duplicates("descriptor") if "descriptor" in positives else positives.iloc[:0]
    queries = list(dict.fromkeys(list(by_descriptor["caption"]) + list(positives["caption"])))[:n]
    images = list(image_vecs)
    matrix = np.stack([image_vecs[i] for i in images])
    true = known_true(frame, images, queries)
    rows = []
    for q, query in enumerate(queries):
        scores = matrix @ text_vecs[query]
        relevant = {images[i] for i in np.flatnonzero(true[:, q])}
        top = np.argsort(-scores, kind="stable")[:k]
        rows.append({"query": f"{query} ({len(relevant)} relevant)",
                     "hits": [{"image": images[j], "score": float(scores[j]), "correct": images[j] in relevant}
                              for j in top]})
    return rows
