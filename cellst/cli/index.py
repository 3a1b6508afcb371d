"""``cellst index``: embed a folder of images into a search index; re-runs embed only new or changed files.

A thin layer over :func:`cellst.index.build_index`; search the index with ``cellst search``.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index", help="Embed a folder of images into a search index (re-runs embed only new or changed files).",
        description="Embed every image under IMAGES_DIR (recursively) into the index folder --out. Running it again "
                    "embeds only new or changed files (size or modification time) and drops removed ones.")
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively)")
    p.add_argument("--model", required=True, help="image-text model: a hub id or a local folder")
    p.add_argument("--out", required=True, help="index folder to create or update")
    p.add_argument("--batch-size", type=int, default=64, help="images per encode call (default: 64)")
    p.add_argument("--workers", type=int, default=2,
                   help="threads decoding images while the model encodes (default: 2; 0 decodes inline)")
    p.add_argument("--rebuild", action="store_true",
                   help="re-embed everything, replacing an index built with another model or folder")
    p.add_argument("--checksum", action="store_true",
                   help="store SHA-1s and skip files whose bytes are unchanged even if their mtime changed")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..index import build_index

    stats = build_index(args.images_dir, args.model, args.out, batch_size=args.batch_size, workers=args.workers,
                        rebuild=args.rebuild, checksum=args.checksum)
    print(f"Index {args.out}: {stats}")
    for path, reason in stats.skipped.items():
        print(f"  skipped {path}: {reason}")
    return 0
