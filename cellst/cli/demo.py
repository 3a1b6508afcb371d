"""``cellst demo``: synthetic cells -> small CLIP -> MNRL -> figures and report, offline (see :mod:`cellst.demo`)."""

from __future__ import annotations

import dataclasses

from ._args import add_dataclass_flags, given


def register(sub) -> None:
    from ..demo import DemoConfig

    p = sub.add_parser("demo", help="the whole job offline on synthetic blood-smear cells (start here)",
                       description="Draw synthetic blood-smear cells, build a small CLIP from scratch (or use --model), "
                                   "measure, fine-tune with MNRL, measure again and write a report.")
    add_dataclass_flags(p, dataclasses.fields(DemoConfig))
    p.set_defaults(run=run)


def run(args) -> int:
    from ..demo import DemoConfig, demo

    demo(DemoConfig(**given(args, dataclasses.fields(DemoConfig))))
    return 0
