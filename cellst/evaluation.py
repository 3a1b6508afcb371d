"""Specific and non-specific recall of a model on a split, as records for ``metrics.json`` and a console table.

Each distinct image and caption of a split is encoded once; every task of :mod:`cellst.retrieval` then reads from those
embeddings. A record is one row of results::

    {"split": "test", "direction": "text_to_image", "rule": "pair", "scope": "non-specific",
     "n_queries": 372, "n_candidates": 147, "metrics": {"recall@5": 0.41, ...}, "chance": {"recall@5": 0.034, ...}}

``scope`` is ``non-specific``, ``specific`` (the query-weighted mean over descriptors) or ``specific:<descriptor>``.
The same code runs inside training (:class:`SplitRecallEvaluator`, each epoch on val) and after it (on test).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from sentence_transformers.base.evaluation import BaseEvaluator

from .data import Columns, read_split
from .images import load_rgb
from .model import encode_images, encode_texts
from .retrieval import DEFAULT_KS, DIRECTIONS, RULES, build_tasks, chance_metrics, task_metrics

HEADLINE = ("accuracy@1", "accuracy@5", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "map@100")


def encode_split(model, frame: pd.DataFrame, batch_size: int = 64, progress: bool = False):
    """Return ``({image_path: vector}, {caption: vector})`` for the split's distinct images and captions."""
    images = list(dict.fromkeys(frame["image"]))
    captions = list(dict.fromkeys(frame["caption"]))
    img = encode_image_files(model, images, batch_size, progress)
    txt = encode_texts(model, captions, batch_size, progress)
    return dict(zip(images, img)), dict(zip(captions, txt))


def encode_image_files(model, paths: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit vectors of the image files, decoded a chunk at a time so memory does not grow with their number."""
    vectors = []
    chunk = max(batch_size * 4, 64)
    with ThreadPoolExecutor(4) as pool:  # decoding overlaps across threads; the model sees whole batches
        for start in range(0, len(paths), chunk):
            pictures = list(pool.map(load_rgb, paths[start:start + chunk]))
            vectors.append(encode_images(model, pictures, batch_size, progress))
            del pictures  # else this chunk stays alive while the next decodes: two chunks of pixels at the peak
    return np.concatenate(vectors) if vectors else np.zeros((0, 0))


def score_split(frame: pd.DataFrame, image_vecs: dict, text_vecs: dict, split: str = "test",
                directions=tuple(DIRECTIONS), rules=RULES, ks=DEFAULT_KS) -> list[dict]:
    """Records for every task of the split, plus the ``specific`` overall rows."""
    vectors = {"image": image_vecs, "caption": text_vecs}
    records = []
    for task in build_tasks(frame, directions, rules):
        q_side, c_side = DIRECTIONS[task.direction]
        q = np.stack([vectors[q_side][k] for k in task.queries])
        c = np.stack([vectors[c_side][k] for k in task.candidates])
        records.append({"split": split, "direction": task.direction, "rule": task.rule, "scope": task.scope,
                        "n_queries": len(task.queries), "n_candidates": len(task.candidates),
                        "metrics": task_metrics(task, q @ c.T, ks), "chance": chance_metrics(task, ks)})
    return records + _specific_overall(records)


def _specific_overall(records: list[dict]) -> list[dict]:
    """Pool the per-descriptor rows: every figure is a mean over queries, so weight each descriptor by its queries."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["scope"].startswith("specific:"):
            groups.setdefault((r["split"], r["direction"], r["rule"]), []).append(r)
    for (split, direction, rule), rows in groups.items():
        weights = np.array([r["n_queries"] for r in rows], float)
        pooled = {part: {key: float(np.average([r[part][key] for r in rows], weights=weights))
                         for key in rows[0][part] if key != "median_rank"} for part in ("metrics", "chance")}
        out.append({"split": split, "direction": direction, "rule": rule, "scope": "specific",
                    "n_queries": int(weights.sum()), "n_candidates": None, **pooled})
    return out


def evaluate(model, split: str | Path | pd.DataFrame, *, split_name: str | None = None, columns: Columns = Columns(),
             image_root: str | Path | None = None, directions=tuple(DIRECTIONS), rules=RULES, ks=DEFAULT_KS,
             batch_size: int = 64, progress: bool = True, allow_outside_root: bool = False) -> list[dict]:
    """Evaluate ``model`` (a SentenceTransformer, hub id or folder) on one split; return the records.

    Image paths that leave the image root are refused unless ``allow_outside_root`` (see :func:`cellst.read_split`).

    Example::

        from cellst import evaluate
        records = evaluate("runs/mnrl", "data/test_split.csv")
        print(format_table(records))
    """
    from .data_checks import check_all_images, warn_long_captions
    from .model import load_model

    if isinstance(model, (str, Path)):
        model = load_model(model)
    if isinstance(split, pd.DataFrame):
        frame = split
    else:
        frame = read_split(split, columns, image_root, allow_outside_root=allow_outside_root)
        frame.attrs["path"] = str(split)
        check_all_images({"split": frame})
    warn_long_captions({"split": frame}, model)
    name = split_name or (Path(split).stem.removesuffix("_split") if not isinstance(split, pd.DataFrame) else "split")
    img, txt = encode_split(model, frame, batch_size, progress)
    return score_split(frame, img, txt, name, directions, rules, ks)


def metric_key(record: dict, metric: str) -> str:
    """Flat name of one figure, as the trainer logs it: ``val_t2i_pair_non-specific_recall@5``."""
    short = {"text_to_image": "t2i", "image_to_text": "i2t"}[record["direction"]]
    return f"{record['split']}_{short}_{record['rule']}_{record['scope']}_{metric}"


def flatten(records: list[dict]) -> dict[str, float]:
    return {metric_key(r, m): v for r in records for m, v in r["metrics"].items()}


def format_table(records: list[dict], metrics=HEADLINE, per_descriptor: bool = True) -> str:
    """A fixed-width table, one line per record, with the chance rate beside accuracy@5."""
    rows = [r for r in records if per_descriptor or ":" not in r["scope"]]
    head = f"{'split':<6} {'direction':<13} {'rule':<7} {'scope':<28} {'n_q':>5} " + \
        " ".join(f"{m:>10}" for m in metrics) + f" {'chance@5':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        figures = " ".join(f"{r['metrics'].get(m, float('nan')):>10.4f}" for m in metrics)
        lines.append(f"{r['split']:<6} {r['direction']:<13} {r['rule']:<7} {r['scope'][:28]:<28} "
                     f"{r['n_queries']:>5} {figures} {r['chance'].get('accuracy@5', float('nan')):>9.4f}")
    return "\n".join(lines)


class SplitRecallEvaluator(BaseEvaluator):
    """A sentence-transformers evaluator that reports cellst's recall records for one split each epoch.

    Returned figures are flat (:func:`metric_key`) so the trainer can log them and keep the best checkpoint by
    ``primary_metric``. ``history`` keeps each call's records for training curves.
    """

    def __init__(self, frame: pd.DataFrame, split: str = "val", primary: str = "text_to_image/pair/non-specific/recall@5",
                 batch_size: int = 64, ks=DEFAULT_KS):
        super().__init__()
        self.frame, self.split, self.batch_size, self.ks = frame, split, batch_size, ks
        direction, rule, scope, metric = primary.split("/")
        self.primary_metric = metric_key({"split": split, "direction": direction, "rule": rule, "scope": scope}, metric)
        self.greater_is_better = "rank" not in metric
        self.history: list[dict] = []

    SHOWN = ("accuracy@1", "recall@5", "recall@10", "mrr@10")

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        img, txt = encode_split(model, self.frame, self.batch_size)
        records = score_split(self.frame, img, txt, self.split, ks=self.ks)
        self.history.append({"epoch": epoch, "step": steps, "records": records})
        # The trainer prints what this returns each epoch: keep it to the headline figures (all are in history).
        rule = self.primary_metric.split("_")[2]
        shown = [r for r in records if r["rule"] == rule and ":" not in r["scope"]]
        figures = {metric_key(r, m): r["metrics"][m] for r in shown for m in self.SHOWN if m in r["metrics"]}
        figures[self.primary_metric] = flatten(records)[self.primary_metric]
        return figures
