"""``cellst prepare``: thesis-format train/val/test CSVs from an attribute table, a captions.json or class folders.

Thin layer over :func:`cellst.prepare.prepare`, :func:`~cellst.prepare.from_captions_json` and
:func:`~cellst.prepare.from_class_folders`; exactly one input mode per call.
"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare", help="make train/val/test caption CSVs (split by image) from annotations",
        description="Input, exactly one of: ATTRIBUTES.csv with --templates; --captions-json FILE; "
                    "--class-folders ROOT with --descriptions FILE. Writes {train,val,test}_split.csv and "
                    "split_summary.json to --out.")
    parser.add_argument("attributes", nargs="?", metavar="ATTRIBUTES.csv", help="one row per image, one column per "
                        "descriptor")
    parser.add_argument("--templates", help="JSON/YAML: descriptor -> list of templates with {value}")
    parser.add_argument("--captions-json", metavar="FILE", help="MiniCLIP captions.json ([{file_name, caption}])")
    parser.add_argument("--class-folders", metavar="ROOT", help="ROOT/CLASS/*.png, one folder per class")
    parser.add_argument("--descriptions", metavar="FILE", help="JSON/YAML: class -> descriptions (--class-folders)")
    parser.add_argument("--out", required=True, help="output folder (new or empty, unless --overwrite)")
    parser.add_argument("--image-column", default="image_path", help="column of image paths (default image_path)")
    parser.add_argument("--class-column", default=None, help="class column: stratifies the split, copied to output")
    parser.add_argument("--descriptors", default=None, help="comma-separated columns to caption (default: all other)")
    parser.add_argument("--negatives", type=int, default=1, help="negative rows per image (default 1)")
    parser.add_argument("--ratios", default="0.8,0.1,0.1", help="train,val,test fractions (default 0.8,0.1,0.1)")
    parser.add_argument("--seed", type=int, default=42, help="split and template seed (default 42, as the thesis)")
    parser.add_argument("--image-root", default=None, help="folder image paths are relative to")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from .. import prepare as lib
    from ..errors import CellstError

    modes = [m for m in ("attributes", "captions_json", "class_folders") if getattr(args, m)]
    if len(modes) != 1:
        raise CellstError(f"Expected exactly one input: ATTRIBUTES.csv, --captions-json or --class-folders; "
                          f"found {len(modes)}. Give one of them.")
    common = dict(negatives_per_image=args.negatives, ratios=args.ratios.split(","), seed=args.seed,
                  overwrite=args.overwrite)
    if args.attributes:
        paths = lib.prepare(args.attributes, args.templates or {}, args.out, image_column=args.image_column,
                            class_column=args.class_column, descriptors=args.descriptors,
                            image_root=args.image_root, **common)
    elif args.captions_json:
        paths = lib.from_captions_json(args.captions_json, args.image_root, args.out, **common)
    else:
        if not args.descriptions:
            raise CellstError("--class-folders needs --descriptions FILE (JSON/YAML: class -> descriptions).")
        paths = lib.from_class_folders(args.class_folders, args.descriptions, args.out,
                                       class_column=args.class_column or "class", **common)
    summary = json.loads((Path(args.out) / "split_summary.json").read_text())["splits"]
    for name, path in paths.items():
        info = summary[name]
        print(f"{name:<5} {path}: {info['images']} images, {info['positives']} positives, "
              f"{info['negatives']} negatives")
    print(f"summary {Path(args.out) / 'split_summary.json'}")
    _note_outside(paths.values())
    return 0


def _note_outside(paths) -> None:
    """Training refuses image paths that leave the CSV's folder unless told otherwise: say so now, not at train time."""
    import pandas as pd

    for path in paths:
        images = pd.read_csv(path, usecols=["image_path"])["image_path"]
        outside = images[images.str.startswith("../") | images.str.startswith("/")]
        if len(outside):
            print(f"note: image paths such as {outside.iloc[0]} leave {path.parent}, so `cellst finetune` and "
                  "`cellst evaluate` will read them only with --allow-outside-root (or write the splits to a folder "
                  "that holds the images).")
            return
