"""Metrics, confusion matrices and the printed table for :mod:`cellst.classify`.

What it is for: turning true and predicted labels into the figures a classification report quotes, all computed by
scikit-learn, and writing them as JSON, CSV and PNG. What it is not: a place where predictions are made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import CellstError

TABLE_ROWS = [("accuracy", "accuracy"), ("precision_macro", "macro precision"), ("recall_macro", "macro recall"),
              ("f1_macro", "macro F1")]


def method_report(y_true: Sequence[str], y_pred: Sequence[str], classes: list[str]) -> dict:
    """Accuracy, macro precision/recall/F1, per-class figures and the confusion matrix (rows true, columns predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    # zero_division=0: a class never predicted has precision 0 rather than a warning and NaN.
    macro = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    per = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(macro[0]),
        "recall_macro": float(macro[1]),
        "f1_macro": float(macro[2]),
        "per_class": {c: {"precision": float(per[0][i]), "recall": float(per[1][i]), "f1": float(per[2][i]),
                          "support": int(per[3][i])} for i, c in enumerate(classes)},
        "confusion": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def confusion_frame(report: dict, classes: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(report["confusion"], index=classes, columns=classes)
    frame.index.name = "true \\ predicted"
    return frame


def write_confusion(report: dict, classes: list[str], out_dir: Path, method: str) -> None:
    """``confusion_<method>.csv`` and ``.png`` (counts written in each cell) in ``out_dir``."""
    confusion_frame(report, classes).to_csv(out_dir / f"confusion_{method}.csv")
    plot_confusion(np.asarray(report["confusion"]), classes, f"{method}: accuracy {report['accuracy']:.3f}",
                   out_dir / f"confusion_{method}.png")


def plot_confusion(matrix: np.ndarray, classes: list[str], title: str, out_png: Path) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CellstError("Drawing confusion matrices needs matplotlib: `pip install cellst[plots]`.") from None
    side = 1.6 + 0.5 * len(classes)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    dark = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > dark else "black")
    fig.savefig(out_png, dpi=100)


def format_table(result: dict) -> str:
    """The methods side by side, one metric per line, with the majority-class baseline for scale."""
    methods = list(result["methods"])
    width = max(12, *(len(m) + 2 for m in methods))
    lines = [f"{'':<16}" + "".join(f"{m:>{width}}" for m in methods)]
    for key, label in TABLE_ROWS:
        lines.append(f"{label:<16}" + "".join(f"{result['methods'][m][key]:>{width}.3f}" for m in methods))
    lines.append(f"({result['n_images']} images, {len(result['classes'])} classes; probe and fused: "
                 f"{result['folds']}-fold cross-validation; majority-class accuracy "
                 f"{result['majority_accuracy']:.3f})")
    return "\n".join(lines)
