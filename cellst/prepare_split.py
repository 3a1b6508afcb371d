"""The shared back end of :mod:`cellst.prepare`: split images, write thesis-format CSVs and a summary.

Every input format (attribute table, MiniCLIP captions.json, class folders) is first turned into a list of
:class:`ImageRows` (one image, its caption rows, its class); from there this module does the rest, so all formats get
the same split rule (by image, stratified by class), the same columns and the same summary. It does not read images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CellstError

SPLITS = ("train", "val", "test")
COLUMNS = ["image_path", "caption", "similarity", "descriptor", "value"]


@dataclass
class ImageRows:
    """One image and the rows prepare writes for it: (caption, similarity 1 or 0, descriptor, value stated or "")."""

    path: Path
    label: str | None = None
    rows: list[tuple[str, int, str, str]] = field(default_factory=list)


def read_mapping(source, what: str) -> dict:
    """A dict from a dict, or from a JSON or YAML file (by extension; anything else is tried as JSON, then YAML)."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise CellstError(f"{what} file not found: {path}. Expected a JSON or YAML file; check the path.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json and yaml both say where the syntax broke; pass that on
        raise CellstError(f"Cannot parse {what} file {path}: {exc}. Expected valid JSON or YAML.") from None
    if not isinstance(data, dict):
        raise CellstError(f"{what} file {path}: expected a mapping at the top level ({{\"name\": [...]}}), "
                          f"found {type(data).__name__}.")
    return data


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to write into a non-empty folder unless ``overwrite``: splits of two runs must never mix."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CellstError(f"Output {out_dir} is a file; expected a folder. Choose another path.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise CellstError(f"Output folder {out_dir} exists and is not empty; expected a new or empty folder. "
                          "Choose another folder, or pass overwrite=True (--overwrite) to replace the files.")


def check_ratios(ratios) -> tuple[float, float, float]:
    """Three non-negative numbers (train, val, test), rescaled to sum to 1."""
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise CellstError(f"Expected three non-negative split ratios (train, val, test) such as 0.8,0.1,0.1; "
                          f"found {ratios!r}.")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def split_counts(n: int, ratios) -> list[int]:
    """Images per split: largest remainders, then an image moved into each empty split that wants some, taken from
    the largest split while that keeps at least one (so a class of 3 is in all three splits, a class of 2 in two)."""
    exact = [n * r for r in ratios]
    counts = [int(np.floor(x)) for x in exact]
    for k in sorted(range(3), key=lambda k: counts[k] - exact[k])[: n - sum(counts)]:
        counts[k] += 1
    for k in range(3):
        donor = int(np.argmax(counts))
        if ratios[k] > 0 and counts[k] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[k] += 1
    return counts


def assign_splits(labels: list, ratios, seed: int) -> list[str]:
    """A split name per image, stratified by label (``None`` everywhere = one stratum); no image is in two splits."""
    rng = np.random.default_rng(seed)
    strata: dict = {}
    for i, label in enumerate(labels):
        strata.setdefault(label, []).append(i)
    out = [""] * len(labels)
    for label in sorted(strata, key=str):  # a fixed order, so the same seed gives the same split
        members = [strata[label][j] for j in rng.permutation(len(strata[label]))]
        bounds = np.cumsum([0, *split_counts(len(members), ratios)])
        for name, lo, hi in zip(SPLITS, bounds, bounds[1:]):
            for i in members[lo:hi]:
                out[i] = name
    return out


def relative_path(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` with forward slashes, or absolute where no relative path exists (other drive)."""
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(folder))).as_posix()
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


def write_splits(images: list[ImageRows], out_dir, *, class_column: str | None = None, ratios=(0.8, 0.1, 0.1),
                 seed: int = 42, overwrite: bool = False, info: dict | None = None) -> dict[str, Path]:
    """Split ``images`` by image, write ``{train,val,test}_split.csv`` and ``split_summary.json``; return the CSVs."""
    import pandas as pd

    out_dir = Path(out_dir)
    ratios = check_ratios(ratios)
    if not images:
        raise CellstError("No images to split; expected at least one image with captions. Check the input.")
    check_out_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = assign_splits([im.label for im in images], ratios, seed)
    columns = COLUMNS + ([class_column] if class_column else [])
    paths, summary = {}, {}
    for split in SPLITS:
        chosen = [im for im, name in zip(images, names) if name == split]
        table = pd.DataFrame(_rows(chosen, out_dir, class_column), columns=columns)
        paths[split] = out_dir / f"{split}_split.csv"
        table.to_csv(paths[split], index=False)
        summary[split] = _summary(chosen, class_column, paths[split].name)
    info = {**(info or {}), "seed": seed, "ratios": list(ratios), "class_column": class_column}
    (out_dir / "split_summary.json").write_text(json.dumps({**info, "splits": summary}, indent=2) + "\n")
    return paths


def _rows(images: list[ImageRows], out_dir: Path, class_column: str | None) -> list[tuple]:
    rows = []
    for im in images:
        rel = relative_path(im.path, out_dir)
        extra = (im.label,) if class_column else ()
        rows += [(rel, *row, *extra) for row in im.rows]
    return rows


def _counts(images: list[ImageRows]) -> dict:
    positives = sum(row[1] == 1 for im in images for row in im.rows)
    rows = sum(len(im.rows) for im in images)
    return {"images": len(images), "rows": rows, "positives": positives, "negatives": rows - positives}


def _summary(images: list[ImageRows], class_column: str | None, file: str) -> dict:
    out = {"file": file, **_counts(images)}
    if class_column:
        labels = sorted({im.label for im in images}, key=str)
        out["per_class"] = {str(c): _counts([im for im in images if im.label == c]) for c in labels}
    return out
