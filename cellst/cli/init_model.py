"""``cellst init-model``: a from-scratch CLIP folder with a tokenizer trained on your captions."""

from __future__ import annotations


def register(sub) -> None:
    from ..scratch import PRESETS

    p = sub.add_parser("init-model", help="build a randomly initialised CLIP (micro, small, base) offline")
    p.add_argument("output", help="folder to write")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--captions", required=True, nargs="+", help="CSV file(s) whose caption column trains the tokenizer")
    p.add_argument("--caption-column", default="caption")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    import pandas as pd

    from ..errors import CellstError
    from ..scratch import init_model

    captions: list[str] = []
    for path in args.captions:
        try:
            frame = pd.read_csv(path)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise CellstError(f"Cannot read captions from {path}: {exc}") from None
        if args.caption_column not in frame:
            raise CellstError(f"{path} has no '{args.caption_column}' column; pass --caption-column.")
        captions += frame[args.caption_column].dropna().astype(str).tolist()
    out = init_model(args.output, args.preset, captions, seed=args.seed, overwrite=args.overwrite)
    print(f"Wrote a {args.preset} CLIP to {out}; fine-tune it with `cellst finetune --model {out} ...`.")
    return 0
