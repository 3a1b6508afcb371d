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


def timed(fn) -> tuple[float, float]:
    """(seconds fn took, CPU cores that other processes used meanwhile). Other tenants of a small machine distort
    timings far more than any difference under test, so callers discard disturbed rounds."""
    busy0, own0 = _cpu_jiffies()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    busy1, own1 = _cpu_jiffies()
    others = max(0, (busy1 - busy0) - (own1 - own0)) / os.sysconf("SC_CLK_TCK")
    return seconds, others / seconds


def compare(methods: dict, n: int, rounds: int, quiet: float = 0.15) -> dict:
    """Time each method once per round, interleaved; keep the rounds in which other processes used under ``quiet``
    cores. Returns each method's best items/s and, per method, the median over kept rounds of
    ``time(first method) / time(method)``: a paired ratio, robust to the machine's speed drifting between rounds.
    With no quiet round at all, every round is kept (and ``quiet_rounds`` says 0)."""
    for fn in methods.values():
        fn()  # warm-up: first-call allocations and lazy imports
    every, kept = [], []
    for _ in range(rounds):
        times = {name: timed(fn) for name, fn in methods.items()}
        every.append({name: t for name, (t, _) in times.items()})
        if max(others for _, others in times.values()) < quiet:
            kept.append(every[-1])
    use = kept or every
    first = next(iter(methods))
    return {name: {"rate": n / min(r[name] for r in use),
                   "ratio": float(np.median([r[first] / r[name] for r in use])),
                   "quiet_rounds": len(kept)} for name in methods}
