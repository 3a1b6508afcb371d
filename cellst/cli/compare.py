"""``cellst compare``: several runs' headline test figures in one table, one row per run."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("compare", help="headline figures of several runs in one table (e.g. the three losses)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders written by `cellst finetune`")
    p.add_argument("--out", help="also write the table to this CSV file")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..compare import compare_runs, format_comparison

    table = compare_runs(args.run_dirs)
    print("Text -> image test figures after training (spec = specific, query-weighted over descriptors):")
    print(format_comparison(table))
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"Table written to {args.out}")
    return 0
