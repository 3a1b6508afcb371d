"""``cellst classify``: zero-shot, linear-probe and fused classification of labelled cell images, side by side.

A thin layer over :func:`cellst.classify.classify`; writes its report files when ``--out`` is given.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classify", help="Classify labelled images: zero-shot, linear probe and fused, with cross-validation.",
        description="DATA is a folder with one subfolder per class (DATA/CLASS/*.png) or a CSV with an image and a "
                    "class column (paths relative to the CSV). Prints accuracy and macro precision/recall/F1 of "
                    "the three methods side by side.")
    p.add_argument("data", metavar="DATA", help="class-per-folder root or CSV")
    p.add_argument("--model", required=True, help="image-text model: a hub id or a local folder")
    p.add_argument("--descriptions", metavar="FILE",
                   help="JSON/YAML: class -> description or list of descriptions (default: "
                        "'a microscopy image of a {class} cell.')")
    p.add_argument("--folds", type=int, default=10, help="cross-validation folds for the probe (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="shuffles the folds (default: 0)")
    p.add_argument("--out", metavar="DIR",
                   help="write classification.json, predictions.csv and confusion_<method>.csv/.png here")
    p.add_argument("--class-column", default="class", help="CSV column with the class (default: class)")
    p.add_argument("--image-column", default="image_path", help="CSV column with the image path (default: image_path)")
    p.add_argument("--batch-size", type=int, default=64, help="images per encode call (default: 64)")
    p.add_argument("--no-fuse", dest="fuse", action="store_false", help="skip the fused (image + description) probe")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..classify import classify, format_table

    result = classify(args.data, args.model, descriptions=args.descriptions, folds=args.folds, seed=args.seed,
                      fuse=args.fuse, out_dir=args.out, class_column=args.class_column,
                      image_column=args.image_column, batch_size=args.batch_size)
    print(format_table(result))
    if args.out:
        print(f"Report: {args.out}/classification.json (confusion matrices beside it)")
    return 0
