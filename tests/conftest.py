"""Shared fixtures: a tiny CLIP built once per session and tiny PNG datasets in ``tmp_path``.

Everything runs offline: HF_HUB_OFFLINE=1 makes an accidental download fail at once.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import pytest
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}
SHAPES = ("round", "square")
VOCAB = [f"The cell is {c}." for c in COLOURS] + [f"The nucleus is {s}." for s in SHAPES]


@pytest.fixture(scope="module")
def one_thread():
    """A micro CLIP trains fastest on one thread; two OpenMP threads on a busy 2-core machine stall (10x slower).
    Modules that train many runs use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A micro CLIP folder (random weights, tokenizer trained on the tiny captions)."""
    from cellst.scratch import init_model

    out = tmp_path_factory.mktemp("models") / "micro"
    init_model(out, preset="micro", captions=VOCAB * 5 + ["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
    return out


@pytest.fixture
def tiny_model(tiny_model_dir):
    from cellst.model import load_model

    return load_model(tiny_model_dir)


def draw(colour: str, shape: str, size: int = 16, seed: int = 0) -> Image.Image:
    """A coloured square or disc on grey, with a little noise so no two images are identical."""
    rng = np.random.default_rng(seed)
    arr = np.full((size, size, 3), 128, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c = size / 2
    mask = (np.hypot(yy - c, xx - c) < size / 3) if shape == "round" else (abs(yy - c) < size / 3) & (abs(xx - c) < size / 3)
    arr[mask] = COLOURS[colour]
    arr = np.clip(arr.astype(int) + rng.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def make_split(folder, name: str, n_images: int, seed: int, start: int = 0) -> "os.PathLike":
    """Write ``n_images`` PNGs and a thesis-format CSV (image_path, caption, similarity, descriptor, class) to ``folder``.

    Each image gets two positives (colour, shape) and one negative (a wrong colour).
    """
    rng = np.random.default_rng(seed)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    colours = list(COLOURS)
    for i in range(start, start + n_images):
        colour, shape = colours[i % len(colours)], SHAPES[(i // len(colours)) % 2]
        rel = f"images/img_{i:03d}.png"
        draw(colour, shape, seed=i).save(folder / rel)
        wrong = colours[(colours.index(colour) + 1 + rng.integers(0, 3)) % len(colours)]
        rows += [
            (rel, f"The cell is {colour}.", 1, "colour", colour),
            (rel, f"The nucleus is {shape}.", 1, "shape", colour),
            (rel, f"The cell is {wrong}.", 0, "colour", colour),
        ]
    path = folder / f"{name}_split.csv"
    pd.DataFrame(rows, columns=["image_path", "caption", "similarity", "descriptor", "class"]).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_splits(tmp_path):
    """Train/val/test CSVs over disjoint images, in one folder; returns a dict name -> path."""
    return {
        "train": make_split(tmp_path, "train", 16, seed=1, start=0),
        "val": make_split(tmp_path, "val", 8, seed=2, start=100),
        "test": make_split(tmp_path, "test", 8, seed=3, start=200),
    }
