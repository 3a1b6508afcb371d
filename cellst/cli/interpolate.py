"""``cellst interpolate``: WiSE-FT blends of a base and a fine-tuned model (see :mod:`cellst.interpolate`)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("interpolate", help="blend base and fine-tuned weights (WiSE-FT); sweep alpha on a split",
                       description="theta = (1 - alpha) * BASE + alpha * TUNED. With --out, write the blend at "
                                   "--alpha; with --split, print the split's figures at each of --alphas.")
    p.add_argument("base", help="the model the run started from (its --model: folder or hub id)")
    p.add_argument("tuned", help="the fine-tuned model (a finetune run folder; merge LoRA runs first)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the tuned model in the written blend")
    p.add_argument("--out", help="folder to write the blend at --alpha to")
    p.add_argument("--split", help="CSV split to evaluate the blend on at each of --alphas")
    p.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma-separated alphas for --split")
    p.add_argument("--batch-size", type=int, default=64, help="encoding batch size for --split")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..errors import CellstError
    from ..interpolate import format_sweep, interpolate, sweep

    if not args.out and not args.split:
        raise CellstError("Nothing to do: give --out DIR to write a blend, --split CSV to compare alphas, or both.")
    if args.split:
        try:
            alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
        except ValueError:
            raise CellstError(f"--alphas '{args.alphas}' should be comma-separated numbers, e.g. 0,0.5,1.") from None
        print(format_sweep(sweep(args.base, args.tuned, args.split, alphas, batch_size=args.batch_size)))
    if args.out:
        out = interpolate(args.base, args.tuned, args.alpha, args.out, overwrite=args.overwrite)
        print(f"Blend at alpha {args.alpha:g} written to {out}.")
    return 0
