"""The ``cellst`` command line: a thin layer over the Python API.

Each subcommand lives in its own module under ``cellst.cli`` and exposes ``register(subparsers)``, which adds its
parser and sets ``run=<function(args) -> int>``. Heavy libraries are imported inside ``run`` so ``cellst --help`` is fast.
User mistakes raise :class:`cellst.errors.CellstError`; ``main`` prints them as one paragraph and returns 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import warnings

from ..errors import CellstError

# Subcommand modules, in the order ``cellst --help`` lists them.
COMMANDS = ["demo", "finetune", "evaluate", "report", "compare", "push", "init_model", "demo_data", "prepare",
            "index", "search", "classify", "interpolate", "merge_lora"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellst", description="Fine-tune CLIP on cell images and captions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        # A command whose module is not installed (a partial checkout) is left out; tests check that all import.
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # Warnings are advice to the user (e.g. duplicate rows), not to a developer: no file and line of cellst's code.
    return f"cellst: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "accepts_extra", False):
            parser.error(f"unrecognised arguments: {' '.join(extra)}")
        args.extra = extra
        return int(args.run(args) or 0)
    except CellstError as exc:
        print(f"cellst: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help exits 0, a bad flag exits 2
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("cellst: interrupted", file=sys.stderr)
        return 130
