"""``cellst demo-data OUT``: write the synthetic blood-smear data set (:func:`cellst.synth.make_demo_data`)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-data", help="write a synthetic blood-smear data set with thesis-format splits",
        description="Draw synthetic white cells (8 types, 10 morphology descriptors) on a red-cell background and "
                    "write images, attributes.csv, templates.json and train/val/test splits to OUT.")
    parser.add_argument("out", metavar="OUT", help="output folder (new or empty, unless --overwrite)")
    parser.add_argument("--images", type=int, default=900, help="number of images (default 900)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96, at least 24)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json
    import time

    from ..synth import make_demo_data

    start = time.perf_counter()
    out = make_demo_data(args.out, n_images=args.images, seed=args.seed, size=args.size, workers=args.workers,
                         overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    print(f"Wrote {args.images} images ({args.size} px) in {seconds:.1f} s ({args.images / seconds:.0f} images/s)")
    print(f"  images:      {out / 'images'}")
    print(f"  attributes:  {out / 'attributes.csv'}")
    print(f"  templates:   {out / 'templates.json'}")
    splits = json.loads((out / "split_summary.json").read_text())["splits"]
    for name, info in splits.items():
        print(f"  {name + ':':<12} {out / info['file']} ({info['images']} images, {info['rows']} rows)")
    print(f"  summary:     {out / 'split_summary.json'}")
    return 0
