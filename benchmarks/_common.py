"""Shared pieces of the benchmarks: synthetic cell images, captions, splits on disk and a plain-text table."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ("red", "green", "blue", "purple", "pink", "pale")
SHAPES = ("round", "oval", "irregular", "lobed")


def cell_image(size: int, seed: int) -> Image.Image:
    """A stained-looking disc (cell) with a darker nucleus on a noisy light background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    r = size * rng.uniform(0.2, 0.35)
    arr = rng.normal(225, 12, (size, size, 3))
    cell = np.hypot(yy - cy, xx - cx) < r
    nucleus = np.hypot(yy - cy, (xx - cx) * 1.3) < r * 0.5
    arr[cell] = rng.uniform(120, 220, 3) + rng.normal(0, 10, (cell.sum(), 3))
    arr[nucleus] = rng.uniform(40, 120, 3) + rng.normal(0, 10, (nucleus.sum(), 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def cell_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    return [cell_image(size, seed + i) for i in range(n)]


def captions(n: int) -> list[str]:
    return [f"The cell is {COLOURS[i % 6]} with a {SHAPES[i // 6 % 4]} nucleus, case {i}." for i in range(n)]


def write_split(folder: Path, n_images: int, size: int, seed: int = 0) -> Path:
    """PNG images and a thesis-format CSV: two distinct positive captions per image, one negative."""
    import pandas as pd

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_images):
        rel = f"images/c{i:06d}.png"
        cell_image(size, seed + i).save(folder / rel)
        rows += [(rel, f"The cell is {COLOURS[i % 6]}, case {i}.", 1, "colour"),
                 (rel, f"The nucleus is {SHAPES[i % 4]}, case {i}.", 1, "nucleus"),
                 (rel, f"The cell is {COLOURS[(i + 1) % 6]}, case {i}.", 0, "colour")]
    path = folder / "train_split.csv"
    pd.DataFrame(rows, columns=["image_path", "caption", "similarity", "descriptor"]).to_csv(path, index=False)
    return path


def table(head: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _cpu_jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies of this process), or (0, 0) where /proc is missing."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return sum(fields) - fields[3] - fields[4], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


def timed(fn) -> dict:
    """Run ``fn`` once: wall seconds, this process's CPU seconds (all its threads) and the CPU cores that other
    processes used meanwhile. Other tenants of a small machine distort wall times far more than any difference
    under test; CPU seconds are much less disturbed by them but hide the gain of using several cores."""
    busy0, own0 = _cpu_jiffies()
    cpu0, start = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    busy1, own1 = _cpu_jiffies()
    others = max(0, (busy1 - busy0) - (own1 - own0)) / os.sysconf("SC_CLK_TCK")
    return {"wall": wall, "cpu": cpu, "others": others / wall}


def compare(methods: dict, n: int, rounds: int, quiet: float = 0.15) -> dict:
    """Time each method once per round, in turn, the order alternating between rounds (neither side always runs
    just after the other, in a warmer cache or a busier minute). The first method is the reference.

    Returns, per method: ``rate`` (items/s in its fastest round), ``ratio`` (median over rounds of the paired wall-time
    ratio ``time(reference) / time(method)``, robust to the machine's speed drifting between rounds) with ``q1``/``q3``
    (its quartiles: the spread noise leaves), ``cpu_ratio`` (the same with this process's CPU seconds), and
    ``others`` (median cores other processes used during the rounds). Only rounds in which other processes used
    under ``quiet`` cores count when there are at least three such rounds (``quiet_rounds`` says how many);
    otherwise every round counts."""
    for fn in methods.values():
        fn()  # warm-up: first-call allocations and lazy imports
    names = list(methods)
    every = [{name: timed(methods[name]) for name in (names if r % 2 == 0 else names[::-1])} for r in range(rounds)]
    kept = [r for r in every if max(t["others"] for t in r.values()) < quiet]
    use = kept if len(kept) >= 3 else every
    out = {}
    for name in names:
        walls = [r[names[0]]["wall"] / r[name]["wall"] for r in use]
        out[name] = {"rate": n / min(r[name]["wall"] for r in use), "ratio": float(np.median(walls)),
                     "q1": float(np.percentile(walls, 25)), "q3": float(np.percentile(walls, 75)),
                     "cpu_ratio": float(np.median([r[names[0]]["cpu"] / r[name]["cpu"] for r in use])),
                     "others": float(np.median([t["others"] for r in every for t in r.values()])),
                     "quiet_rounds": len(kept)}
    return out


def load_line() -> str:
    """The machine's load, for the record: benchmarks on a shared machine must say how shared it was."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"
