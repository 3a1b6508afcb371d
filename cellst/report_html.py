"""What the run report says and how it looks: blocks of headings, text, tables and pictures, rendered twice.

Every number is formatted once, by :func:`fmt` (four decimals), from the metrics :func:`cellst.report.write_report`
stores in ``metrics.json``; ``report.md`` and ``report.html`` render the same strings, so they agree with each other
and with the file. The HTML is self-contained: pictures are embedded as base64 PNG, the style sheet is inline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from .report import ARROWS, MODELS, RunView, figure, find_record

RANKS = ("mean_rank", "median_rank")
SIMILARITY = ("n_pairs", "pearson", "spearman", "accuracy", "accuracy_threshold", "f1", "f1_threshold", "precision",
              "recall", "ap", "mcc")
CSS = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:2px 5px;white-space:nowrap}
th{background:#f0f3f7}td{text-align:right;font-variant-numeric:tabular-nums}td:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd}h2{border-bottom:2px solid #1f77b4;padding-bottom:3px}
.note{background:#fff8e1;padding:6px 10px;border-left:4px solid #f0b400}"""
BASELINES_TEXT = (
    "Baselines are computed on the same split and the same queries as the model. **before** is the model training "
    "started from. **random** is the exact expectation of each figure under a uniformly random ranking, not a "
    "sample (its median rank is omitted: a median of random ranks is not an expectation). **tfidf** is a text-only "
    "bag-of-words baseline in MiniCLIP's sense: each image is represented by its other positive captions in the "
    "split, those about other descriptors than the caption it is scored against (leave-one-descriptor-out; "
    "without descriptors, leave-one-caption-out), never its negatives; caption and image text are compared by "
    "TF-IDF cosine (IDF from the training captions). It shows how far an image's other annotations, read as words, "
    "predict this one. Tied scores are ordered at random, and figures are the exact expectation over that order.")


def fmt(value) -> str:
    """The one number format of the report: four decimals; integers as they are; a dash for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    if isinstance(value, (bool, int)):
        return str(value)
    return f"{value:.4f}"


def build_blocks(view: RunView) -> list[tuple[str, object]]:
    """The report as ``(kind, payload)`` blocks: ``h2``/``h3``/``p``/``note`` text, ``table`` and ``img``."""
    return [*_overview(view), *_data(view), *_retrieval(view), *_descriptors(view), *_similarity(view),
            *_zero_shot(view), ("h2", "Baselines"), ("p", BASELINES_TEXT), *_pictures(view), *_configuration(view),
            *[("note", n) for n in view.notes]]


def _overview(view: RunView) -> list:
    m = view.metrics
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in (m.get("seconds") or {}).items())
    lines = [f"Run folder `{view.run}`; started from `{m.get('model')}`; loss `{m.get('loss')}`; figures on the "
             f"**{view.split_name}** split." + (f" Time: {seconds}." if seconds else "")]
    parts = [f"{w} {fmt(figure(view.records(w), 'text_to_image', 'pair', 'non-specific', 'accuracy@1'))}"
             for w in MODELS if view.records(w)]
    if parts:
        lines.append("Text \u2192 image accuracy@1 (pair rule, whole split): " + ", ".join(parts) + ".")
    return [("h2", "Overview"), *[("p", line) for line in lines]]


def _data(view: RunView) -> list:
    keys = ("split", "path", "rows", "images", "positives", "negatives", "descriptors", "classes")
    return [("h2", "Data"), ("table", (list(keys), [[fmt(s[k]) if k not in ("split", "path") else s[k] for k in keys]
                                                    for s in view.summary]))]


def _ks(view: RunView) -> list[str]:
    after = view.records("after") or view.records("random")
    keys = after[0]["metrics"] if after else {}
    return sorted((k.split("@")[1] for k in keys if k.startswith("accuracy@")), key=int)


def _retrieval(view: RunView) -> list:
    ks = _ks(view)
    columns = [f"accuracy@{k}" for k in ks] + [f"recall@{k}" for k in ks] + ["mrr@10", "ndcg@10", "map@100", *RANKS]
    blocks = [("h2", "Retrieval"), ("p", "Accuracy@k counts a query as a hit when any relevant item is in the top k; "
                                         "recall@k divides the hits by the number of relevant items. Ranks are those "
                                         "of the first relevant item (MedR is its median).")]
    for scope in ("non-specific", "specific"):
        for direction in ARROWS:
            for rule in ("pair", "caption"):
                rows = [[w, *_counts(r), *[fmt(r["metrics"].get(c)) for c in columns]] for w in MODELS
                        if (r := find_record(view.records(w), direction, rule, scope))]
                if rows:
                    blocks += [("h3", f"{ARROWS[direction]} \u00b7 {rule} rule \u00b7 {scope}"),
                               ("table", (["model", "queries", "candidates", *columns], rows))]
    return blocks


def _counts(record: dict) -> list[str]:
    return [fmt(record["n_queries"]), fmt(record.get("n_candidates"))]


def _descriptors(view: RunView) -> list:
    ks = _ks(view)
    if not ks:
        return []
    figures = [f"accuracy@{ks[0]}", f"recall@{ks[min(1, len(ks) - 1)]}", "mrr@10"]
    models = [w for w in MODELS if view.records(w)]
    scopes = sorted({r["scope"] for r in view.records("after") if r["scope"].startswith("specific:")})
    blocks = [("h2", "Specific retrieval per descriptor")] if scopes else []
    for direction in ARROWS:
        for rule in ("pair", "caption"):
            rows = []
            for scope in scopes:
                after = find_record(view.records("after"), direction, rule, scope)
                if after:
                    rows.append([scope.split(":", 1)[1], *_counts(after),
                                 *[fmt(figure(view.records(w), direction, rule, scope, f)) for f in figures
                                   for w in models]])
            if rows:
                header = ["descriptor", "queries", "candidates", *[f"{f} {w}" for f in figures for w in models]]
                blocks += [("h3", f"{ARROWS[direction]} \u00b7 {rule} rule \u00b7 per descriptor"),
                           ("table", (header, rows))]
    return blocks


def _similarity(view: RunView) -> list:
    sim = view.metrics.get("similarity") or {}
    rows = [[w, *[fmt(sim[w].get(k)) for k in SIMILARITY]] for w in ("before", "after") if w in sim]
    if not rows:
        return []
    chance = next(sim[w]["chance"] for w in ("after", "before") if w in sim)
    rows.append(["chance", *[fmt(chance.get(k)) for k in SIMILARITY]])
    return [("h2", "Embedding similarity of the labelled pairs"),
            ("p", "Every labelled row (image, caption, 1/0) is a pair. Pearson and Spearman correlate the cosine "
                  "similarity with the label; accuracy and F1 use the best cosine threshold on this split (so they are "
                  "optimistic), AP ranks all pairs by cosine. Computed by sentence-transformers' "
                  "EmbeddingSimilarityEvaluator and BinaryClassificationEvaluator. Chance: the majority label's "
                  "accuracy, F1 of calling every pair positive, AP of a random score."),
            ("table", (["model", *SIMILARITY], rows))]


def _zero_shot(view: RunView) -> list:
    shot = view.metrics.get("zero_shot") or {}
    models = [w for w in ("before", "after") if shot.get(w)]
    if not models:
        return []
    keys = ("n_images", "n_classes", "accuracy", "balanced_accuracy", "chance")
    classes = shot[models[-1]]["classes"]
    per_class = [[c, fmt(shot[models[-1]]["per_class"][c]["n"]),
                  *[fmt(shot[w]["per_class"][c]["accuracy"]) for w in models]] for c in classes]
    return [("h2", "Zero-shot cell type"),
            ("p", f"Each image is scored against one caption per class, `{shot[models[-1]]['template']}`; the "
                  "nearest is the "
                  "prediction. Chance is 1 / number of classes."),
            ("table", (["model", *keys], [[w, *[fmt(shot[w][k]) for k in keys]] for w in models])),
            ("table", (["class", "images", *[f"accuracy {w}" for w in models]], per_class))]


def _pictures(view: RunView) -> list:
    blocks = [("h2", "Pictures")] if view.figures else []
    for caption, path in view.figures.values():
        blocks += [("p", caption), ("img", (caption, path))]
    return blocks


def _configuration(view: RunView) -> list:
    rows = [[k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)] for k, v in view.config.items()]
    return [("h2", "Configuration"), ("table", (["option", "value"], rows))] if rows else []


def to_markdown(title: str, blocks: list, root: Path) -> str:
    out = [f"# {title}", ""]
    for kind, payload in blocks:
        if kind in ("h2", "h3"):
            out += [("## " if kind == "h2" else "### ") + payload, ""]
        elif kind in ("p", "note"):
            out += [("> " if kind == "note" else "") + payload, ""]
        elif kind == "table":
            header, rows = payload
            out += [_md_row(header), _md_row(["---"] * len(header)), *[_md_row(r) for r in rows], ""]
        elif kind == "img":
            caption, path = payload
            out += [f"![{caption}]({Path(path).relative_to(root).as_posix()})", ""]
    return "\n".join(out)


def _md_row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_html(title: str, blocks: list) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for kind, payload in blocks:
        if kind in ("h2", "h3"):
            body.append(f"<{kind}>{html.escape(payload)}</{kind}>")
        elif kind in ("p", "note"):
            body.append(f"<p{' class=note' if kind == 'note' else ''}>{_inline(payload)}</p>")
        elif kind == "table":
            header, rows = payload
            body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) +
                        "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r)
                                                         + "</tr>" for r in rows) + "</tbody></table>")
        elif kind == "img":
            caption, path = payload
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """The little Markdown the paragraphs use: **bold** and `code`."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def write_documents(view: RunView) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder."""
    title = f"cellst run report: {view.run.name}"
    blocks = build_blocks(view)
    md, page = view.run / "report.md", view.run / "report.html"
    md.write_text(to_markdown(title, blocks, view.run), encoding="utf-8")
    page.write_text(to_html(title, blocks), encoding="utf-8")
    return {"markdown": md, "html": page}
