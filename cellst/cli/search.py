"""``cellst search``: query an index built by ``cellst index`` with texts or example images.

A thin layer over :func:`cellst.search.search`. ``--interactive`` keeps the model loaded and answers queries typed at a
``query> `` prompt; prefix a line with ``image:`` to search by an image file.
"""

from __future__ import annotations

import sys
from pathlib import Path

IMAGE_PREFIX = "image:"


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="Search an image index by text or by example image.",
                              description="Print the top-k indexed images for each query (cosine similarity).")
    p.add_argument("index", metavar="INDEX", help="index folder written by `cellst index`")
    p.add_argument("texts", metavar="TEXT", nargs="*", help="text queries")
    p.add_argument("-k", type=int, default=5, help="hits per query (default: 5)")
    p.add_argument("--image", action="append", default=[], metavar="PATH",
                   help="search by this image (repeatable)")
    p.add_argument("--queries", metavar="FILE", help="text file with one query per line")
    p.add_argument("--grid", metavar="PNG", help="also draw the hits into this picture")
    p.add_argument("--interactive", action="store_true",
                   help="keep the model loaded and read queries at a prompt until an empty line, `quit` or EOF")
    p.add_argument("--model", help="model to embed the queries (default: the one recorded in the index)")
    p.add_argument("--backend", choices=["exact", "faiss"], default="exact",
                   help="exact: numpy (default); faiss: needs `pip install cellst[faiss]`")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..errors import CellstError
    from ..index import load_index
    from ..index_io import check_same_model, resolve_model
    from ..search import index_model

    index = load_index(args.index)
    model, _ = resolve_model(args.model or index_model(index))
    check_same_model(index.meta, model, index.root)  # once, not per query
    texts = list(args.texts) + _read_queries(args.queries)
    if args.interactive:
        return _interactive(index, model, args)
    if not texts and not args.image:
        raise CellstError("Nothing to search for: give TEXT queries, --image PATH, --queries FILE or --interactive.")
    _answer(index, model, args, texts, args.image)
    return 0


def _answer(index, model, args, texts: list[str], images: list[str]) -> None:
    from ..search import save_grid, search

    results = search(index, model, texts, images, k=args.k, backend=args.backend, check_model=False)
    print(f"(paths relative to {index.images_dir})")
    for query, hits in results:
        print(f"{'image ' + str(query) if isinstance(query, Path) else repr(query)}:")
        for rank, (path, score) in enumerate(hits, 1):
            print(f"  {rank:>3}. {score:+.4f}  {path}")
    if args.grid:
        print(f"Grid: {save_grid(results, index.images_dir, args.grid)}")


def _interactive(index, model, args) -> int:
    from ..errors import CellstError

    print(f"Searching {len(index)} images. Type a query, or `{IMAGE_PREFIX} PATH`; an empty line or `quit` ends.")
    while True:
        try:
            line = input("query> ").strip()
        except EOFError:
            break
        if line in ("", "quit", "exit"):
            break
        image = line[len(IMAGE_PREFIX):].strip() if line.startswith(IMAGE_PREFIX) else None
        try:
            _answer(index, model, args, [] if image else [line], [image] if image else [])
        except CellstError as exc:  # a mistyped image path should not end the session
            print(f"error: {exc}", file=sys.stderr)
    return 0


def _read_queries(path: str | None) -> list[str]:
    from ..errors import CellstError

    if path is None:
        return []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CellstError(f"Cannot read --queries {path}: {exc.strerror}. Expected a text file, one query per line.")
    return [line.strip() for line in lines if line.strip()]
