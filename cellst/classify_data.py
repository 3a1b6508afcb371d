"""Reading labelled images and class descriptions for :mod:`cellst.classify`.

What it is for: turning a folder-per-class layout or a CSV, and a descriptions file, into checked Python lists, with
errors that name the file, row and column at fault. What it is not: a training-data reader (captions live elsewhere).

Inputs:

====================  ===========================================================================================
folder-per-class      ``root/CLASS/*.png`` (any extension in ``IMAGE_EXTENSIONS``, nested folders allowed): the class
                      is the name of the first folder under ``root``
CSV                   one row per image: an image column (paths relative to the CSV's folder, or absolute) and a
                      class column; rows repeating the same image with the same class (e.g. caption rows) count once
descriptions          JSON or YAML mapping class -> a description or a list of descriptions
====================  ===========================================================================================
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from .errors import CellstError, where
from .images import IMAGE_EXTENSIONS

DEFAULT_TEMPLATE = "a microscopy image of a {class_name} cell."


def load_labelled_images(data, class_column: str = "class", image_column: str = "image_path"):
    """Return ``(paths, labels)``: absolute image paths and their class names, from a folder or a CSV."""
    data = Path(data)
    if data.is_dir():
        return _from_folders(data)
    if data.is_file() and data.suffix.lower() in (".csv", ".tsv"):
        return _from_csv(data, class_column, image_column)
    raise CellstError(f"Expected a folder with one subfolder per class (root/CLASS/*.png) or a CSV with "
                      f"'{image_column}' and '{class_column}' columns; found {'nothing' if not data.exists() else 'a file'} "
                      f"at {data}.")


def _from_folders(root: Path):
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        paths += found
        labels += [folder.name] * len(found)
    if not paths:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:3]
        found = f"images directly in it ({', '.join(loose)}, ...)" if loose else "no images in any subfolder"
        raise CellstError(f"No labelled images in {root}: expected one subfolder per class holding its images "
                          f"(e.g. {root}/HSIL/cell_001.png); found {found}. Move each image into its class folder, "
                          "or pass a CSV with image and class columns.")
    return [p.resolve() for p in paths], labels


def _from_csv(csv: Path, class_column: str, image_column: str):
    table = pd.read_csv(csv, sep="\t" if csv.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
    for column, flag in ((image_column, "--image-column"), (class_column, "--class-column")):
        if column not in table.columns:
            raise CellstError(f"{csv} has no column '{column}' (columns: {', '.join(table.columns)}). Name the right "
                              f"one with {flag}.")
    for column in (image_column, class_column):
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise CellstError(f"Empty value at {where(csv, int(empty[0]) + 1, column)}; every row needs an image and "
                              "a class. Fill it in or delete the row.")
    table = table[[image_column, class_column]].drop_duplicates()
    clash = table[table[image_column].duplicated(keep=False)]
    if len(clash):
        first = clash[image_column].iloc[0]
        raise CellstError(f"{csv}: image {first} appears with several classes "
                          f"({', '.join(clash[clash[image_column] == first][class_column])}); each image needs one "
                          "class.")
    paths = [p if p.is_absolute() else (csv.parent / p) for p in map(Path, table[image_column])]
    missing = [(row, p) for row, p in zip(table.index, paths) if not p.is_file()]
    if missing:
        listed = "; ".join(str(p) for _, p in missing[:5])
        raise CellstError(f"{len(missing)} image(s) listed in {csv} (column '{image_column}', first at data row "
                          f"{missing[0][0] + 1}) do not exist: {listed}. Paths are read relative to the CSV's folder.")
    return [p.resolve() for p in paths], table[class_column].tolist()


def load_descriptions(source, classes: list[str]) -> dict[str, list[str]]:
    """Class -> list of descriptions. ``source`` is a JSON/YAML file, a dict, or ``None`` (the default template)."""
    if source is None:
        return {c: [DEFAULT_TEMPLATE.format(class_name=c)] for c in classes}
    mapping = _read_mapping(Path(source)) if isinstance(source, (str, Path)) else source
    label = str(source) if isinstance(source, (str, Path)) else "descriptions"
    if not isinstance(mapping, dict):
        raise CellstError(f"{label}: expected a mapping class -> description(s), found {type(mapping).__name__}.")
    mapping = {str(k): v for k, v in mapping.items()}
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise CellstError(f"{label} has no description for class(es) {', '.join(missing)} (it describes: "
                          f"{', '.join(mapping) or 'nothing'}). Add one per class; class names must match the data.")
    extra = sorted(set(mapping) - set(classes))
    if extra:
        warnings.warn(f"{label} describes class(es) absent from the data, ignored: {', '.join(extra)}.", stacklevel=3)
    return {c: _as_list(mapping[c], label, c) for c in classes}


def _read_mapping(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CellstError(f"Cannot read descriptions file {path}: {exc.strerror}.") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # json and yaml raise different types; both mean a syntax error
        raise CellstError(f"Cannot parse descriptions file {path}: {exc}. Expected JSON or YAML mapping class -> "
                          "description or list of descriptions.") from None


def _as_list(value, label: str, cls: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise CellstError(f"{label}, class '{cls}': expected a non-empty description or list of descriptions, "
                          f"found {value!r}.")
    return texts
