"""A synthetic peripheral-blood-smear data set, for demos and tests when no real data is at hand.

Each image is one white cell on a background of red cells, drawn by :mod:`cellst.synth_draw` from morphology
descriptors. The descriptors are sampled from per-type distributions (:data:`PROFILES`), so a type is recognisable but
its descriptors vary, as in real smears. :func:`make_demo_data` writes the images, an attribute table, caption
templates and thesis-format splits (via :func:`cellst.prepare.prepare`). It is not a model of real haematology: the
numbers are chosen so every named feature is visible at 96 px.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from .errors import CellstError

# Descriptor -> values; each value is drawn differently (see synth_draw).
DESCRIPTORS = {
    "cell_size": ["small", "medium", "large"],
    "nuclear_shape": ["round", "kidney-shaped", "band-shaped", "segmented", "bilobed", "irregular"],
    "nucleus_position": ["central", "eccentric"],
    "nc_ratio": ["low", "moderate", "high"],
    "chromatin": ["fine", "coarse", "dense"],
    "nucleoli": ["absent", "visible"],
    "cytoplasm_colour": ["pale blue", "grey-blue", "pink", "deep blue"],
    "granules": ["none", "fine pink", "large orange-red", "dark purple"],
    "vacuoles": ["absent", "present"],
    "projections": ["absent", "hair-like"],
}

# Values every type takes unless its profile says otherwise.
_COMMON = {"nucleus_position": {"central": 1.0}, "nucleoli": {"absent": 1.0}, "granules": {"none": 1.0},
           "vacuoles": {"absent": 1.0}, "projections": {"absent": 1.0}}

# Cell type -> descriptor -> {value: probability}. Each type has a signature (size, nuclear shape, granule or cytoplasm
# colour) that a small model can learn, plus minority values so descriptors are not a function of type.
PROFILES = {
    "lymphocyte": {"cell_size": {"small": 0.8, "medium": 0.2}, "nuclear_shape": {"round": 0.85, "kidney-shaped": 0.15},
                   "nc_ratio": {"high": 0.75, "moderate": 0.25}, "chromatin": {"dense": 0.8, "coarse": 0.2},
                   "cytoplasm_colour": {"pale blue": 0.85, "grey-blue": 0.15},
                   "granules": {"none": 0.85, "fine pink": 0.15}},
    "monocyte": {"cell_size": {"large": 0.75, "medium": 0.25},
                 "nuclear_shape": {"kidney-shaped": 0.6, "irregular": 0.3, "band-shaped": 0.1},
                 "nc_ratio": {"moderate": 0.6, "low": 0.4}, "chromatin": {"fine": 0.5, "coarse": 0.5},
                 "cytoplasm_colour": {"grey-blue": 0.9, "pale blue": 0.1}, "granules": {"none": 0.6, "fine pink": 0.4},
                 "vacuoles": {"present": 0.6, "absent": 0.4}},
    "neutrophil": {"cell_size": {"medium": 0.85, "large": 0.15},
                   "nuclear_shape": {"segmented": 0.8, "band-shaped": 0.12, "bilobed": 0.08},
                   "nc_ratio": {"low": 0.8, "moderate": 0.2}, "chromatin": {"coarse": 0.6, "dense": 0.4},
                   "cytoplasm_colour": {"pink": 0.9, "pale blue": 0.1}, "granules": {"fine pink": 0.9, "none": 0.1},
                   "vacuoles": {"absent": 0.85, "present": 0.15}},
    "eosinophil": {"cell_size": {"medium": 0.7, "large": 0.3}, "nuclear_shape": {"bilobed": 0.8, "segmented": 0.2},
                   "nc_ratio": {"low": 0.7, "moderate": 0.3}, "chromatin": {"coarse": 0.6, "dense": 0.4},
                   "cytoplasm_colour": {"pink": 0.85, "pale blue": 0.15}, "granules": {"large orange-red": 1.0}},
    "basophil": {"cell_size": {"medium": 0.75, "small": 0.25},
                 "nuclear_shape": {"bilobed": 0.5, "irregular": 0.3, "segmented": 0.2},
                 "nc_ratio": {"moderate": 0.7, "low": 0.3}, "chromatin": {"coarse": 0.7, "dense": 0.3},
                 "cytoplasm_colour": {"pale blue": 0.5, "pink": 0.5}, "granules": {"dark purple": 1.0}},
    "blast": {"cell_size": {"large": 0.6, "medium": 0.4}, "nuclear_shape": {"round": 0.65, "irregular": 0.35},
              "nc_ratio": {"high": 0.9, "moderate": 0.1}, "chromatin": {"fine": 0.9, "coarse": 0.1},
              "nucleoli": {"visible": 0.85, "absent": 0.15},
              "cytoplasm_colour": {"deep blue": 0.6, "pale blue": 0.25, "grey-blue": 0.15},
              "granules": {"none": 0.8, "fine pink": 0.2}, "vacuoles": {"absent": 0.8, "present": 0.2}},
    "plasma cell": {"cell_size": {"medium": 0.8, "large": 0.2}, "nuclear_shape": {"round": 0.9, "kidney-shaped": 0.1},
                    "nucleus_position": {"eccentric": 0.95, "central": 0.05}, "nc_ratio": {"moderate": 0.6, "low": 0.4},
                    "chromatin": {"coarse": 0.8, "dense": 0.2},
                    "cytoplasm_colour": {"deep blue": 0.9, "grey-blue": 0.1},
                    "vacuoles": {"absent": 0.7, "present": 0.3}},
    "hairy cell": {"cell_size": {"medium": 0.6, "large": 0.4},
                   "nuclear_shape": {"round": 0.45, "kidney-shaped": 0.4, "irregular": 0.15},
                   "nc_ratio": {"moderate": 0.7, "high": 0.3}, "chromatin": {"fine": 0.6, "coarse": 0.4},
                   "cytoplasm_colour": {"pale blue": 0.75, "grey-blue": 0.25}, "projections": {"hair-like": 1.0}},
}
CELL_TYPES = list(PROFILES)

# Three phrasings per descriptor, as in the thesis; cell_type is captioned too so zero-shot typing is possible.
TEMPLATES = {
    "cell_type": ["Cell type: {value}.", "This white blood cell is a {value}.", "A {value} in a blood smear."],
    "cell_size": ["The cell is {value}.", "The cell size is {value}.", "A {value} white blood cell."],
    "nuclear_shape": ["The nucleus is {value}.", "The nuclear shape is {value}.", "A cell with a {value} nucleus."],
    "nucleus_position": ["The nucleus is {value}.", "The nucleus position is {value}.",
                         "A cell with a {value} nucleus."],
    "nc_ratio": ["The nucleus-to-cytoplasm ratio is {value}.", "The N:C ratio is {value}.",
                 "A cell with a {value} nuclear-cytoplasmic ratio."],
    "chromatin": ["The chromatin is {value}.", "The nuclear chromatin is {value}.",
                  "A nucleus with {value} chromatin."],
    "nucleoli": ["Nucleoli are {value}.", "The nucleoli are {value}.", "Nucleoli: {value}."],
    "cytoplasm_colour": ["The cytoplasm is {value}.", "The cytoplasm colour is {value}.",
                         "A cell with {value} cytoplasm."],
    "granules": ["Granules: {value}.", "The granulation is {value}.", "Cytoplasmic granules: {value}."],
    "vacuoles": ["Vacuoles are {value}.", "The cytoplasm vacuoles are {value}.", "Vacuoles: {value}."],
    "projections": ["Cytoplasmic projections are {value}.", "The cell outline projections are {value}.",
                    "Projections: {value}."],
}


def sample_attributes(cell_type: str, rng: np.random.Generator) -> dict:
    """Draw one value per descriptor from ``cell_type``'s profile."""
    profile = {**_COMMON, **PROFILES[cell_type]}
    attrs = {"cell_type": cell_type}
    for name in DESCRIPTORS:
        values, probs = zip(*profile[name].items())
        attrs[name] = values[rng.choice(len(values), p=np.asarray(probs) / sum(probs))]
    return attrs


def render(cell_type: str, seed: int, index: int, size: int = 96) -> tuple[dict, np.ndarray]:
    """Attributes and pixels of image ``index``; depends only on (seed, index), so any worker gives the same result."""
    from .synth_draw import draw_cell

    rng = np.random.default_rng([seed, index])
    attrs = sample_attributes(cell_type, rng)
    return attrs, draw_cell(attrs, rng, size)


def _write_one(job: tuple) -> dict:
    from PIL import Image

    out_dir, cell_type, seed, index, size = job
    attrs, pixels = render(cell_type, seed, index, size)
    rel = f"images/cell_{index:05d}.png"  # no type in the name: a path read as text must not give the label away
    # zlib level 1: sensor noise barely compresses anyway, and the default level costs more than drawing the cell.
    Image.fromarray(pixels).save(Path(out_dir) / rel, compress_level=1)
    return {"image_path": rel, **attrs}


def _cell_types(n_images: int, seed: int) -> list[str]:
    """Balanced types in a seeded order, so the file index says nothing about the type."""
    types = [CELL_TYPES[i % len(CELL_TYPES)] for i in range(n_images)]
    return [types[i] for i in np.random.default_rng([seed, 2**31]).permutation(n_images)]


def _clear_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite``; then remove old images so a smaller set leaves no strays."""
    from .prepare_split import check_out_dir

    check_out_dir(out_dir, overwrite)
    for old in (out_dir / "images").glob("cell_*.png"):  # only files this function writes
        old.unlink()


def generate_images(out_dir: Path, n_images: int, seed: int, size: int, workers: int | None) -> list[dict]:
    """Write the PNGs under ``out_dir/images`` and return one attribute row per image, in index order."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(str(out_dir), t, seed, i, size) for i, t in enumerate(_cell_types(n_images, seed))]
    workers = min(workers or os.cpu_count() or 1, max(n_images // 64, 1))
    if workers <= 1:
        return [_write_one(job) for job in jobs]
    with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
        return pool.map(_write_one, jobs, chunksize=32)


def make_demo_data(out_dir, n_images: int = 900, seed: int = 0, size: int = 96, workers: int | None = None,
                   overwrite: bool = False) -> Path:
    """Write a synthetic blood-smear data set to ``out_dir`` and return ``out_dir``.

    Writes ``images/*.png``, ``attributes.csv`` (``image_path``, ``cell_type``, one column per descriptor),
    ``templates.json`` and the thesis-format ``train_split.csv``, ``val_split.csv``, ``test_split.csv`` and
    ``split_summary.json``. Same ``seed`` -> byte-identical files, whatever ``workers`` is.

    Example:
        >>> from cellst.synth import make_demo_data
        >>> folder = make_demo_data("demo_cells", n_images=200, seed=0)  # doctest: +SKIP
    """
    import pandas as pd

    from .prepare import prepare

    out_dir = Path(out_dir)
    if n_images < 1 or size < 24:
        raise CellstError(f"Expected n_images >= 1 and size >= 24 px; got n_images={n_images}, size={size}. "
                          "Smaller images cannot show granules or nucleoli.")
    _clear_out_dir(out_dir, overwrite)
    rows = generate_images(out_dir, n_images, seed, size, workers)
    table = pd.DataFrame(rows, columns=["image_path", "cell_type", *DESCRIPTORS])
    table.to_csv(out_dir / "attributes.csv", index=False)
    (out_dir / "templates.json").write_text(json.dumps(TEMPLATES, indent=2) + "\n")
    # templates.json has cell_type templates, so the type is captioned too ("This white blood cell is a blast.").
    prepare(out_dir / "attributes.csv", out_dir / "templates.json", out_dir, class_column="cell_type", seed=seed,
            overwrite=True)
    return out_dir


def contact_sheet(path, per_type: int = 6, size: int = 96, seed: int = 0, types=None) -> Path:
    """Save a grid of examples (one row per cell type, labelled) to ``path``: the way to check the drawings by eye."""
    from PIL import Image, ImageDraw

    types = list(types or CELL_TYPES)
    label_w = 90
    sheet = Image.new("RGB", (label_w + per_type * (size + 2), len(types) * (size + 2)), "white")
    pen = ImageDraw.Draw(sheet)
    for row, cell_type in enumerate(types):
        pen.text((4, row * (size + 2) + size // 2 - 6), cell_type, fill="black")
        for col in range(per_type):
            _, pixels = render(cell_type, seed, row * 1000 + col, size)
            sheet.paste(Image.fromarray(pixels), (label_w + col * (size + 2), row * (size + 2)))
    sheet.save(path)
    return Path(path)


def benchmark(n_images: int = 600, size: int = 96, workers: int | None = None) -> float:
    """Generate ``n_images`` into a temporary folder and return images per second (PNG writing included)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_images(Path(tmp), n_images, 0, size, workers)
        return n_images / (time.perf_counter() - start)


if __name__ == "__main__":  # python -m cellst.synth: speed and a contact sheet to look at
    print(f"{benchmark():.0f} images/s at 96 px on {os.cpu_count()} CPUs")
    print(f"contact sheet: {contact_sheet('/tmp/cellst_contact_sheet.png')}")
