"""The run report: what a finetune run achieved, beside the baselines, in ``report.md`` and a self-contained HTML.

What it is for: one call, :func:`write_report`, turns a run folder (``metrics.json``, ``trainer_log.jsonl``,
``cellst_config.yaml`` and the saved model) into figures and a report a reviewer can check. It computes what the run
did not (baselines, embedding-similarity figures, zero-shot accuracy), stores them in ``metrics.json`` under new keys
(``baselines``, ``similarity``, ``zero_shot``) without touching the existing ones, and formats every number in the
report from ``metrics.json``, so the two always agree. :func:`cellst.compare.compare_runs` puts several runs in one
table.
What it is not: an evaluation of its own; retrieval figures come from :mod:`cellst.evaluation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .data import CLASS_COLUMNS, Columns, read_split
from .errors import CellstError
from .similarity import DEFAULT_TEMPLATE, image_classes, pair_similarity, zero_shot

SPLITS = ("train", "val", "test")


@dataclass
class RunView:
    """A run folder and everything the report shows; every figure shown is read from ``metrics``."""

    run: Path
    config: dict
    metrics: dict
    log: list[dict]
    split_name: str | None = None
    frame: pd.DataFrame | None = None
    train_captions: pd.Series | None = None  # IDF weights of the TF-IDF baseline are learnt from these
    summary: list[dict] = field(default_factory=list)
    models: dict = field(default_factory=dict)  # "before" / "after" -> SentenceTransformer
    vectors: dict = field(default_factory=dict)  # "before" / "after" -> (image vectors, text vectors)
    notes: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # name -> (caption, path)

    def records(self, which: str) -> list[dict]:
        """Records of ``before``/``after`` (the split the report is about) or a baseline (``random``/``tfidf``)."""
        if which in ("random", "tfidf"):
            return [r for r in self.metrics.get("baselines", []) if r.get("model") == which]
        source = self.metrics.get("report_records") or self.metrics
        return source.get(which) or []


def write_report(run_dir, test_split=None, model=None, class_column: str | None = None,
                 template: str = DEFAULT_TEMPLATE) -> dict[str, Path]:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into ``run_dir``; return ``{name: path}``.

    Args:
        run_dir: a folder written by :func:`cellst.finetune`.
        test_split: CSV to report on; default the config's test split (whose before/after figures are in
            ``metrics.json``). For another split, before/after are computed and stored under ``report_records``.
        model: the fine-tuned model, if already loaded (default: load it from ``run_dir``).
        class_column: the split column with cell types, for zero-shot accuracy and the image-image heatmap;
            default the first of :data:`CLASS_COLUMNS` the split has.
        template: the zero-shot caption per class; ``{class}`` is replaced by the class name.

    Example::

        from cellst.report import write_report
        paths = write_report("runs/mnrl")
        print(paths["html"])
    """
    view = load_run(run_dir)
    # 1. The split the figures are about, and the data summary of every split.
    _attach_split(view, test_split, class_column)
    # 2. Models: the fine-tuned one and the one it started from, when that can still be loaded.
    _load_models(view, model)
    # 3. Figures the run did not compute, stored beside the existing ones.
    _compute(view, template)
    (view.run / "metrics.json").write_text(json.dumps(view.metrics, indent=2))
    # 4. Pictures, then the documents, both formatted from view.metrics.
    from .report_html import write_documents

    _draw(view)
    paths = write_documents(view)
    return {**{name: path for name, (_, path) in view.figures.items()}, **paths}


def load_run(run_dir) -> RunView:
    """Read a run folder's metrics, config and trainer log; only ``metrics.json`` is required."""
    import yaml

    run = Path(run_dir)
    if not (run / "metrics.json").is_file():
        raise CellstError(f"{run} holds no metrics.json, so it is not a finished cellst run. Give the --output "
                          "folder of a `cellst finetune` run.")
    metrics = json.loads((run / "metrics.json").read_text())
    config_file = run / "cellst_config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    log_file = run / "trainer_log.jsonl"
    log = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()] if log_file.is_file() else []
    return RunView(run, config or {}, metrics, log)


def _columns(config: dict, class_column: str | None, csv_path) -> Columns:
    if class_column is None and csv_path is not None:
        header = pd.read_csv(csv_path, nrows=0).columns
        class_column = next((c for c in CLASS_COLUMNS if c in header), None)
    return Columns(config.get("image_column", "image_path"), config.get("caption_column", "caption"),
                   config.get("label_column", "similarity"), config.get("descriptor_column", "descriptor"),
                   config.get("value_column", "value"), klass=class_column)


def _find(path, run: Path) -> Path | None:
    """A split path as written in the config: as given (relative to where training ran), else beside the run."""
    for candidate in (Path(path), run / path, run.parent / path):
        if candidate.is_file():
            return candidate
    return None


def _attach_split(view: RunView, test_split, class_column: str | None) -> None:
    named = {s: view.config.get(s) for s in SPLITS if view.config.get(s)}
    view.split_name = _split_name(named, test_split)
    view.metrics.pop("report_records", None)  # figures of an earlier report on another split are stale now
    if view.split_name != "test":
        named[view.split_name] = str(test_split)
        view.metrics["report_records"] = {"split": str(test_split)}
    frames = {}
    for name, path in named.items():
        found = _find(path, view.run)
        if found is None:
            view.notes.append(f"The {name} split {path} was not found, so it is left out of the data summary.")
            continue
        columns = _columns(view.config, class_column, found)
        frames[name] = read_split(found, columns, view.config.get("image_root"), float_labels=True,
                                  allow_outside_root=bool(view.config.get("allow_outside_root")))
        view.summary.append(_summarise(name, path, frames[name]))
    view.frame = frames.get(view.split_name)
    view.train_captions = frames["train"]["caption"] if "train" in frames else None
    if view.frame is None:
        view.notes.append("No test split could be read (none in the config, or moved): the report shows only the "
                          "figures in metrics.json. Pass --split test.csv to report on one.")


def _split_name(named: dict, test_split) -> str:
    """``test`` for the config's test split (its before/after figures are in metrics.json), else a new name."""
    if test_split is None or (named.get("test") and _same_file(test_split, named["test"])):
        return "test"
    name = Path(test_split).stem.removesuffix("_split")
    return name if name != "test" and (name not in named or _same_file(named[name], test_split)) else "report"


def _same_file(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _summarise(name: str, path, frame: pd.DataFrame) -> dict:
    described = frame["descriptor"][frame["descriptor"] != ""] if "descriptor" in frame else pd.Series(dtype=str)
    return {"split": name, "path": str(path), "rows": len(frame), "images": frame["image"].nunique(),
            "positives": int((frame["label"] == 1).sum()), "negatives": int((frame["label"] == 0).sum()),
            "descriptors": int(described.nunique()), "classes": len(set(image_classes(frame).values())) or None}


def _load_models(view: RunView, model) -> None:
    from .model import load_model

    if view.frame is None:
        return
    try:
        view.models["after"] = model if model is not None and not isinstance(model, (str, Path)) else \
            load_model(model or view.run)
    except CellstError as exc:
        view.notes.append(f"The fine-tuned model could not be loaded, so figures that need embeddings are left "
                          f"out: {exc}")
    start = view.metrics.get("model") or view.config.get("model")
    try:
        if start:
            view.models["before"] = load_model(start)
    except CellstError as exc:
        view.notes.append(f"The starting model {start} could not be loaded (moved, or a hub id while offline), so "
                          f"'before' pictures and figures computed here show the fine-tuned model only: {exc}")


def _compute(view: RunView, template: str) -> None:
    """Baselines, before/after records for a non-default split, similarity and zero-shot figures, into metrics."""
    from .baselines import random_records, tfidf_records
    from .evaluation import encode_split, score_split

    if view.frame is None:
        return
    rules = [r.strip() for r in str(view.config.get("rules", "pair,caption")).split(",") if r.strip()]
    frame, name = view.frame, view.split_name
    view.metrics["baselines"] = (random_records(frame, name, rules) +
                                 tfidf_records(frame, view.train_captions, name, rules))
    batch = int(view.config.get("eval_batch_size", 64))
    view.vectors = {w: encode_split(view.models[w], frame, batch) for w in ("before", "after") if w in view.models}
    if "report_records" in view.metrics:
        for which, (img, txt) in view.vectors.items():
            view.metrics["report_records"][which] = score_split(frame, img, txt, name, rules=rules)
    view.metrics["similarity"] = {"split": name, **{which: pair_similarity(frame, *vectors)
                                                    for which, vectors in view.vectors.items()}}
    shots = {which: zero_shot(view.models[which], frame, view.vectors[which][0], template) for which in view.vectors}
    view.metrics["zero_shot"] = {"split": name, **shots} if any(shots.values()) else None
    if view.metrics["zero_shot"] is None:
        view.notes.append("Zero-shot cell-type accuracy needs a class column with at least two classes in the split; "
                          "none was found.")


MODELS = ("before", "after", "random", "tfidf")
BAR_FIGURES = ("accuracy@1", "accuracy@5", "recall@5", "recall@10", "mrr@10", "ndcg@10")
ARROWS = {"text_to_image": "text \u2192 image", "image_to_text": "image \u2192 text"}


def _draw(view: RunView) -> None:
    """Every picture the run supports, into ``run/figures``; one whose inputs are missing is left out."""
    from . import plots
    from .similarity import class_matrix, pair_matrix, top_images

    try:
        import matplotlib  # noqa: F401  (an optional extra; a report without pictures beats a failed run)
    except ImportError:
        view.notes.append("matplotlib is not installed, so the report has no pictures: pip install cellst[plots].")
        return
    out = view.run / "figures"
    direction, rule, scope, metric = _best_metric(view.config)
    losses, evals, eval_losses, chance = _curves(view, (direction, rule, scope, metric))
    view.figures["training_curves"] = (
        f"Training loss per step; validation {_label(direction, rule, scope, metric)} per epoch (it picks the best "
        "checkpoint).", plots.training_curves(losses, evals, metric, out / "training_curves.png", eval_losses, chance))
    if view.records("after"):
        bar_metric = metric if "rank" not in metric else "recall@5"
        view.figures["headline_bars"] = (
            f"Test figures, {rule} rule, whole split: before and after training, random ranking and TF-IDF.",
            plots.grouped_bars(_headline_panels(view, rule), out / "headline_bars.png"))
        panels = _descriptor_panels(view, rule, bar_metric)
        if panels:
            view.figures["descriptor_bars"] = (f"Specific {bar_metric} per descriptor ({rule} rule).",
                                               plots.grouped_bars(panels, out / "descriptor_bars.png", bar_metric))
    if "after" in view.vectors:
        img, txt = view.vectors["after"]
        view.figures["retrieval_grid"] = (
            "Text \u2192 image after training: each query caption, its top-5 test images and their cosine scores; a "
            "green border marks an image the split says the caption is true of (in any phrasing of its values).",
            plots.retrieval_grid(top_images(view.frame, img, txt), out / "retrieval_grid.png"))
    panels = [{"title": f"{which} training", **pair_matrix(view.frame, *view.vectors[which])} for which in view.vectors]
    if panels:
        for panel in panels:
            panel["col_labels"] = [Path(i).stem for i in panel["col_labels"]]
        view.figures["pair_heatmap"] = (
            "Cosine similarity of sampled test captions (rows) and images (columns): the diagonal holds the sampled "
            "pairs; red boxes mark every image the split says a caption is true of.",
            plots.heatmaps(panels, out / "pair_heatmap.png", "image", "caption"))
    panels = [{"title": f"{which} training", **m} for which in view.vectors
              if (m := class_matrix(view.frame, view.vectors[which][0])) is not None]
    if panels:
        view.figures["class_heatmap"] = ("Image-image cosine similarity, images sorted by class.",
                                         plots.heatmaps(panels, out / "class_heatmap.png", "image", "image"))


def _best_metric(config: dict) -> tuple[str, str, str, str]:
    parts = str(config.get("best_metric", "text_to_image/pair/non-specific/recall@5")).split("/")
    return tuple(parts) if len(parts) == 4 else ("text_to_image", "pair", "non-specific", "recall@5")


def _label(direction: str, rule: str, scope: str, metric: str) -> str:
    return f"{ARROWS.get(direction, direction)} {rule} {scope} {metric}"


def _curves(view: RunView, best: tuple):
    """Training loss per step and the chosen validation figure per epoch (from the evaluator's full records)."""
    losses = [(e["step"], e["loss"]) for e in view.log if "loss" in e and "step" in e]
    eval_losses = [(e["step"], e["eval_loss"]) for e in view.log if "eval_loss" in e and "step" in e]
    evals, chance = [], None
    for point in view.metrics.get("val_history", []):
        record = find_record(point["records"], *best[:3])
        if record and best[3] in record["metrics"]:
            evals.append((point["epoch"], record["metrics"][best[3]]))
            chance = record["chance"].get(best[3])
    return losses, evals, eval_losses, chance


def find_record(records: list[dict], direction: str, rule: str, scope: str) -> dict | None:
    """The record of one task (direction, rule, scope), or ``None``."""
    return next((r for r in records if (r["direction"], r["rule"], r["scope"]) == (direction, rule, scope)), None)


def figure(records: list[dict], direction: str, rule: str, scope: str, metric: str) -> float | None:
    """One number from a list of records, or ``None``."""
    record = find_record(records, direction, rule, scope)
    return record["metrics"].get(metric) if record else None


def _headline_panels(view: RunView, rule: str) -> list[dict]:
    return [{"title": f"{ARROWS[d]}, {rule} rule", "groups": list(BAR_FIGURES),
             "series": {w: [figure(view.records(w), d, rule, "non-specific", m) for m in BAR_FIGURES]
                        for w in MODELS if view.records(w)}} for d in ARROWS]


def _descriptor_panels(view: RunView, rule: str, metric: str) -> list[dict]:
    scopes = sorted({r["scope"] for r in view.records("after") if r["scope"].startswith("specific:")})
    return [{"title": f"{ARROWS[d]}, {rule} rule", "groups": [s.split(":", 1)[1] for s in scopes],
             "series": {w: [figure(view.records(w), d, rule, s, metric) for s in scopes]
                        for w in MODELS if view.records(w)}} for d in ARROWS] if scopes else []
