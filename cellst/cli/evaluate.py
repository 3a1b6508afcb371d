"""``cellst evaluate``: specific and non-specific recall of a model on one split."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="recall of a model on a split CSV")
    p.add_argument("--model", required=True, help="run folder, model folder or hub id")
    p.add_argument("--split", required=True, help="thesis-format CSV (image_path, caption, similarity[, descriptor])")
    p.add_argument("--image-root", help="folder image paths are relative to (default: the CSV's folder)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="read image paths that leave the image root (../, absolute paths elsewhere)")
    p.add_argument("--image-column", default="image_path")
    p.add_argument("--caption-column", default="caption")
    p.add_argument("--label-column", default="similarity")
    p.add_argument("--descriptor-column", default="descriptor")
    p.add_argument("--value-column", default="value", help="optional column with the descriptor value a caption states")
    p.add_argument("--rules", default="pair,caption", help="relevance rules: pair, caption")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="write the records to this JSON file")
    p.set_defaults(run=run)


def run(args) -> int:
    import json

    from ..data import Columns
    from ..evaluation import evaluate, format_table

    columns = Columns(args.image_column, args.caption_column, args.label_column, args.descriptor_column,
                      args.value_column)
    if "descriptor" not in _header(args.split, args.descriptor_column):
        print(f"note: {args.split} has no '{args.descriptor_column}' column, so only non-specific recall is "
              "reported; add a descriptor column for specific recall.")
    records = evaluate(args.model, args.split, columns=columns, image_root=args.image_root,
                       rules=[r.strip() for r in args.rules.split(",")], batch_size=args.batch_size,
                       allow_outside_root=args.allow_outside_root)
    print(format_table(records))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"schema": "cellst.metrics/1", "model": str(args.model), "records": records}, fh, indent=2)
        print(f"Records written to {args.out}")
    return 0


def _header(path: str, descriptor_column: str) -> set[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return {"descriptor"}  # let evaluate() report the problem with its full message
    return {"descriptor"} if descriptor_column in first.strip().split(",") else set()
