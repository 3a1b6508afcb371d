"""``cellst report``: figures, report.md and a self-contained report.html for a finetune run folder."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write figures, report.md and report.html into a run folder")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `cellst finetune`")
    p.add_argument("--split", help="CSV to report on (default: the run's test split)")
    p.add_argument("--class-column", default=None,
                   help="split column with cell types, for zero-shot accuracy (default: class or cell_type if present)")
    p.add_argument("--template", default=None, help="zero-shot caption per class; {class} is replaced by its name")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..report import write_report
    from ..similarity import DEFAULT_TEMPLATE

    paths = write_report(args.run_dir, test_split=args.split, class_column=args.class_column,
                         template=args.template or DEFAULT_TEMPLATE)
    for name, path in paths.items():
        print(f"{name:<16} {path}")
    return 0
