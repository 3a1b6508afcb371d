"""Searching an image index (:mod:`cellst.index`) by text or by example image, and drawing the results.

What it is for: "show me the cells that look like this description / this image" over a folder embedded once.
What it is not: an evaluation; retrieval metrics on labelled data live with the evaluator.

Scores are cosine similarities between unit vectors. The default ``exact`` backend is one numpy matrix product;
``faiss`` (``pip install cellst[faiss]``) uses an exact inner-product index (``IndexFlatIP``) and returns the same hits.

Example::

    from cellst.search import search, save_grid
    results = search("cells.index", None, queries=["a mitotic cell"], k=5)  # None: the model that built the index
    for query, hits in results:
        print(query, hits[0])  # ('img_042.png', 0.31)
    save_grid(results, load_index("cells.index").images_dir, "hits.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .errors import CellstError
from .images import load_rgb
from .index import Index, load_index
from .index_io import check_same_model, resolve_model


class SearchResult(NamedTuple):
    """One query and its hits, best first. A ``str`` query is a text; a ``Path`` query is an image."""

    query: str | Path
    hits: list[tuple[str, float]]  # (path relative to the index's images folder, cosine similarity)


def search(index, model=None, queries: Sequence[str] | None = None, images: Sequence | None = None, k: int = 5,
           backend: str = "exact", check_model: bool = True) -> list[SearchResult]:
    """The ``k`` nearest indexed images to each text in ``queries`` and each image file in ``images``.

    Args:
        index: an :class:`~cellst.index.Index` or the path of an index folder.
        model: a loaded image-text SentenceTransformer, a hub id or folder, or ``None`` for the model recorded in the
            index.
        queries: texts; results come first for these, in order.
        images: image files, searched by their embedding (image-to-image); results follow the text queries.
        k: hits per query (fewer if the index is smaller).
        backend: ``"exact"`` (numpy) or ``"faiss"``.
        check_model: refuse a model that does not embed like the index's (costs one tiny encode per call).
    """
    index = index if isinstance(index, Index) else load_index(index)
    model, _ = resolve_model(index_model(index) if model is None else model)
    if check_model:
        check_same_model(index.meta, model, index.root)
    labels, vectors = _encode_queries(model, list(queries or []), [Path(p) for p in images or []])
    scores, rows = _backend(backend)(index, vectors, _check_k(k, len(index)))
    paths = index.paths
    return [SearchResult(label, [(paths[r], float(s)) for r, s in zip(row_ids, row_scores)])
            for label, row_ids, row_scores in zip(labels, rows, scores)]


def index_model(index: Index) -> str:
    """The model id recorded in the index, for searching with the model that built it."""
    if index.model_id == "unknown":
        raise CellstError(f"Index {index.root} does not record which model built it (it was given a model object "
                          "without a name); pass the model explicitly (--model).")
    return index.model_id


def _check_k(k: int, n: int) -> int:
    if k < 1:
        raise CellstError(f"k must be at least 1 (found {k}); it is the number of hits per query.")
    return min(k, n)


def _encode_queries(model, texts: list[str], images: list[Path]):
    """Labels (texts, then image paths) and their unit vectors; each modality is encoded in its own call."""
    from .model import encode_images, encode_texts

    if not texts and not images:
        raise CellstError("Nothing to search for: give at least one text query or one query image.")
    parts = []
    if texts:
        parts.append(encode_texts(model, texts))
    if images:
        parts.append(encode_images(model, [load_rgb(p) for p in images]))
    return texts + images, np.concatenate(parts).astype(np.float32)


def exact_topk(index: Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and row ids of the ``k`` largest inner products per query, best first (ties: lower row first)."""
    scores = queries @ index.embeddings.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1)


def faiss_topk(index: Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same search through faiss's exact inner-product index, built once per loaded index."""
    try:
        import faiss
    except ImportError:
        raise CellstError("backend 'faiss' needs the faiss package, which is not installed. Install it with "
                          "`pip install cellst[faiss]` (or `pip install faiss-cpu`), or use the default exact "
                          "backend.") from None
    if "faiss" not in index.cache:
        flat = faiss.IndexFlatIP(index.embeddings.shape[1])
        flat.add(np.ascontiguousarray(index.embeddings, dtype=np.float32))
        index.cache["faiss"] = flat
    return index.cache["faiss"].search(np.ascontiguousarray(queries, dtype=np.float32), k)


BACKENDS = {"exact": exact_topk, "faiss": faiss_topk}


def _backend(name: str):
    if name not in BACKENDS:
        raise CellstError(f"Unknown search backend '{name}'; expected one of: {', '.join(BACKENDS)}.")
    return BACKENDS[name]


def save_grid(results: Sequence[SearchResult], images_root, out_png, thumb_inches: float = 1.6) -> Path:
    """Draw one row per query: the query (text, or the query image) on the left, then its hits with scores.

    ``images_root`` is the folder the hits' paths are relative to, or the :class:`~cellst.index.Index` itself.
    """
    images_root = images_root.images_dir if isinstance(images_root, Index) else Path(images_root)
    Figure = _matplotlib_figure()
    if not results:
        raise CellstError("No search results to draw.")
    cols = 1 + max(len(r.hits) for r in results)
    fig = Figure(figsize=(thumb_inches * cols, thumb_inches * 1.25 * len(results)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(results), cols, squeeze=False))
    for row, result in zip(axes, results):
        for ax in row:
            ax.set_axis_off()
        _draw_query(row[0], result.query)
        for ax, (rank, (rel, score)) in zip(row[1:], enumerate(result.hits, 1)):
            _draw_image(ax, images_root / rel, f"#{rank}  {score:.3f}\n{_short(rel)}")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png


def _draw_query(ax, query) -> None:
    if isinstance(query, Path):
        _draw_image(ax, query, f"query image\n{_short(query.name)}")
        return
    import textwrap

    ax.text(0.5, 0.5, textwrap.fill(query, 18), ha="center", va="center", fontsize=9, wrap=True,
            transform=ax.transAxes, bbox={"boxstyle": "round", "facecolor": "#eef"})


def _draw_image(ax, path: Path, title: str) -> None:
    try:
        ax.imshow(load_rgb(path))
    except CellstError:  # deleted or broken since indexing: show the gap rather than fail the whole picture
        ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_title(title, fontsize=7)


def _short(name: str | Path, width: int = 22) -> str:
    name = str(name)
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CellstError("Drawing needs matplotlib, which is not installed: `pip install cellst[plots]`.") from None
    return Figure
