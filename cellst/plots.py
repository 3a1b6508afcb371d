"""Pictures for the run report (PNG, matplotlib's object API, no pyplot and no global backend).

What it is for: drawing numbers that were computed elsewhere. Each function takes plain data (lists, arrays, dicts of
figures) and an output path, writes one PNG and returns its path; none loads a model or computes a metric, so the
pictures show exactly the numbers in ``metrics.json``. What it is not: an analysis; see :mod:`cellst.report`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .errors import CellstError

# Fixed colours per series, so "after" looks the same in every picture of a report.
COLOURS = {"before": "#9e9e9e", "after": "#1f77b4", "random": "#d62728", "tfidf": "#ff7f0e"}
_CYCLE = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def training_curves(losses: list[tuple[float, float]], evals: list[tuple[float, float]], metric: str, path,
                    eval_losses: list[tuple[float, float]] = (), chance: float | None = None) -> Path:
    """Left: training loss per step (and val loss at each evaluation). Right: ``metric`` on val per epoch.

    ``losses`` and ``eval_losses`` are ``(step, loss)``; ``evals`` is ``(epoch, value)``.
    """
    fig = _figure((10, 3.6))
    ax_loss, ax_metric = fig.subplots(1, 2)
    if losses:
        ax_loss.plot(*zip(*losses), marker=".", color=COLOURS["after"], label="train loss")
    if eval_losses:
        ax_loss.plot(*zip(*eval_losses), marker="o", ls="--", color=COLOURS["tfidf"], label="val loss")
    _decorate(ax_loss, "Loss", "optimiser step", "loss", legend=bool(losses or eval_losses))
    if evals:
        ax_metric.plot(*zip(*evals), marker="o", color=COLOURS["after"], label=f"val {metric}")
    if chance is not None:
        ax_metric.axhline(chance, ls=":", color=COLOURS["random"], label=f"random ({chance:.3f})")
    if "rank" not in metric:
        ax_metric.set_ylim(0, 1.05)
    _decorate(ax_metric, f"Validation {metric}", "epoch", metric, legend=bool(evals or chance is not None))
    if not losses and not evals:
        ax_loss.text(0.5, 0.5, "no training log", ha="center", transform=ax_loss.transAxes)
    return _save(fig, path)


def retrieval_grid(rows: list[dict], path, thumb: float = 1.5) -> Path:
    """One row per query: the caption, then its top hits with scores; correct hits get a green border.

    ``rows``: ``[{"query": str, "hits": [{"image": path, "score": float, "correct": bool}, ...]}, ...]``.
    """
    from .images import load_rgb

    if not rows:
        raise CellstError("No queries to draw in the retrieval grid.")
    cols = 1 + max(len(r["hits"]) for r in rows)
    fig = _figure((thumb * cols, thumb * 1.2 * len(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), cols, squeeze=False))
    for ax_row, row in zip(axes, rows):
        for ax in ax_row:
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        ax_row[0].text(0.5, 0.5, textwrap.fill(row["query"], 18), ha="center", va="center", fontsize=8,
                       transform=ax_row[0].transAxes, bbox={"boxstyle": "round", "facecolor": "#eef"})
        for rank, (ax, hit) in enumerate(zip(ax_row[1:], row["hits"]), 1):
            ax.imshow(load_rgb(hit["image"]))
            ax.set_title(f"#{rank}  {hit['score']:.3f}" + ("  \u2713" if hit["correct"] else ""), fontsize=7,
                         color="#1a7f1a" if hit["correct"] else "black")
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("#22aa22" if hit["correct"] else "#dddddd")
                spine.set_linewidth(4 if hit["correct"] else 1)
    return _save(fig, path)


def heatmaps(panels: list[dict], path, xlabel: str, ylabel: str, annotate_below: int = 13) -> Path:
    """Side-by-side heatmaps sharing one colour scale (e.g. before and after training).

    Each panel: ``{"title", "matrix", "row_labels", "col_labels"}``, optional ``"marks"`` (cells to outline, e.g.
    the true pairs) and ``"groups"`` (``[(label, start, stop)]``: lines between groups and one tick per group, for
    image-image matrices sorted by class). Values are written in the cells of small matrices.
    """
    if not panels:
        raise CellstError("No heatmap panels to draw.")
    lo = min(float(np.min(p["matrix"])) for p in panels)
    hi = max(float(np.max(p["matrix"])) for p in panels)
    size = max(len(p["matrix"]) for p in panels)
    side = min(4 + 0.35 * size, 9)
    fig = _figure((side * len(panels) + 1, side))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, panel in zip(axes, panels):
        m = np.asarray(panel["matrix"], float)
        image = ax.imshow(m, vmin=lo, vmax=hi, cmap="viridis")
        _heatmap_labels(ax, panel, m.shape)
        for i, j in panel.get("marks", ()):
            ax.add_patch(_rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        if max(m.shape) < annotate_below:
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > (lo + hi) / 2 else "white")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8), ax.set_ylabel(ylabel, fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    return _save(fig, path)


def _heatmap_labels(ax, panel: dict, shape) -> None:
    groups = panel.get("groups")
    if groups:
        centres = [(start + stop - 1) / 2 for _, start, stop in groups]
        names = [label for label, _, _ in groups]
        ax.set_xticks(centres, names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(centres, names, fontsize=7)
        for _, _, stop in groups[:-1]:
            ax.axhline(stop - 0.5, color="white", lw=1), ax.axvline(stop - 0.5, color="white", lw=1)
        return
    ax.set_xticks(range(shape[1]), [_short(c, 14) for c in panel["col_labels"]], rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(shape[0]), [_short(r, 30) for r in panel["row_labels"]], fontsize=6)


def grouped_bars(panels: list[dict], path, ylabel: str = "figure") -> Path:
    """Grouped bars, one panel per row: before/after/baselines per headline figure, or per descriptor.

    Each panel: ``{"title", "groups": [x labels], "series": {name: [value per group]}}``; a series named in
    :data:`COLOURS` keeps its colour. Missing values (``None``) leave a gap. Bars are labelled with their value
    when there is room (at most 24 bars a panel); the exact figures are in the report's tables.
    """
    if not panels:
        raise CellstError("No bar panels to draw.")
    groups = max(len(p["groups"]) for p in panels)
    labelled = groups * max(len(p["series"]) for p in panels) <= 24
    fig = _figure((max(5.0, (1.1 if labelled else 0.8) * groups + 1.5), 3.4 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, panel in zip(axes, panels):
        names = list(panel["series"])
        width = 0.8 / max(len(names), 1)
        x = np.arange(len(panel["groups"]))
        for s, name in enumerate(names):
            values = np.array([np.nan if v is None else v for v in panel["series"][name]], float)
            bars = ax.bar(x + (s - (len(names) - 1) / 2) * width, values, width, label=name,
                          color=COLOURS.get(name, _CYCLE[s % len(_CYCLE)]))
            if labelled:
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_xticks(x, [textwrap.fill(str(g), 12) for g in panel["groups"]], fontsize=7)
        ax.set_ylim(0, 1.25)  # headroom for the legend above bars that reach 1
        _decorate(ax, panel["title"], "", ylabel, legend=False)
        ax.legend(fontsize=7, ncol=len(names), loc="upper center")
    return _save(fig, path)


def _decorate(ax, title: str, xlabel: str, ylabel: str, legend: bool) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8), ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)


def _short(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _rectangle(*args, **kwargs):
    from matplotlib.patches import Rectangle

    return Rectangle(*args, **kwargs)


def _figure(size):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CellstError("Drawing needs matplotlib, which is not installed: `pip install cellst[plots]`.") from None
    return Figure(figsize=size, layout="constrained")


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
