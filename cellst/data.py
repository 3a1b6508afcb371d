"""Reading and checking thesis-format CSV splits.

A split is a CSV with one row per (image, caption) pair: ``image_path``, ``caption``, ``similarity`` (1 = the caption
describes the image, 0 = it does not), optionally ``descriptor`` (which morphology feature the caption is about) and
``value`` (the descriptor value the caption states, e.g. ``large``; ``cellst prepare`` writes it). Column names are
configurable with :class:`Columns`.

This module owns the first stage of the data's way: it turns CSV files into checked pandas frames with absolute image
paths and canonical column names (``image``, ``caption``, ``label``, ``descriptor``, ``value``, ``row``), and says which
captions are known true of which images (:func:`known_true`). It reports every problem it can find at once, with file,
row and column, before any model is loaded. Building training datasets from the frames is :mod:`cellst.pairs`' job.
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data_checks import check_all_images, row_list as _rows  # noqa: F401 (check_all_images is public here)
from .errors import CellstError, where


# Class columns looked for, in this order, when none is named: what cellst's fixtures and `cellst demo-data` write.
CLASS_COLUMNS = ("class", "cell_type")


@dataclass(frozen=True)
class Columns:
    """Names of the CSV columns cellst reads. The defaults are the thesis format."""

    image: str = "image_path"
    caption: str = "caption"
    label: str = "similarity"
    descriptor: str | None = "descriptor"
    value: str | None = "value"  # optional: the descriptor value a caption states (see known_true)
    klass: str | None = None  # optional cell-type column, used for zero-shot classification


def read_split(path: str | Path, columns: Columns = Columns(), image_root: str | Path | None = None,
               float_labels: bool = False, allow_outside_root: bool = False) -> pd.DataFrame:
    """Read one CSV split into a frame with canonical columns and absolute image paths.

    Image paths are resolved against ``image_root`` when given, else against the CSV's own folder. ``row`` holds the
    1-based line number in the file (the header is line 1), so messages point where a spreadsheet shows the row.
    Labels must be 0 or 1, or any value in [0, 1] when ``float_labels`` (the cosine loss). A path that leaves the root
    (``../``, an absolute path elsewhere) is refused unless ``allow_outside_root``: a CSV from someone else should not
    make cellst read files outside the folder you gave it.
    """
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, path, columns)
    out = pd.DataFrame({"row": frame.index + 2})
    root = Path(image_root) if image_root is not None else path.parent
    out["image"] = [_resolve(p, root, path, i + 2, columns.image, allow_outside_root)
                    for i, p in enumerate(frame[columns.image])]
    out["caption"] = _captions(frame[columns.caption], path, columns.caption)
    out["label"] = _labels(frame[columns.label], path, columns.label, float_labels)
    out.attrs.update(image_column=columns.image, caption_column=columns.caption, label_column=columns.label)
    if columns.descriptor and columns.descriptor in frame:
        out["descriptor"] = frame[columns.descriptor].astype("string").str.strip().fillna("")
        empty = out.loc[out["descriptor"] == "", "row"].tolist()
        if empty:
            warnings.warn(f"{path}: {len(empty)} rows have an empty '{columns.descriptor}' (rows {_rows(empty)}); "
                          "they count for non-specific recall but are left out of specific recall.", stacklevel=2)
    if columns.value and columns.value in frame and "descriptor" in out:
        out["value"] = frame[columns.value].astype("string").str.strip().fillna("")
    if columns.klass and columns.klass in frame:
        out["class"] = frame[columns.klass].astype("string").fillna("")
    _warn_duplicates(out, path)
    return out


def load_splits(paths: dict[str, str | Path | None], columns: Columns = Columns(),
                image_root: str | Path | None = None, float_labels: bool = False, allow_leakage: bool = False,
                allow_outside_root: bool = False, check_images: bool = True) -> dict[str, pd.DataFrame]:
    """Read every named split, check every image once and refuse images shared between splits.

    ``paths`` maps split names (train, val, test) to CSV paths; ``None`` entries are skipped.
    """
    splits = {name: read_split(p, columns, image_root, float_labels, allow_outside_root)
              for name, p in paths.items() if p is not None}
    for name, frame in splits.items():
        frame.attrs["path"] = str(paths[name])
    if check_images:
        check_all_images(splits)
    if not allow_leakage:
        check_leakage(splits)
    return splits


def check_leakage(splits: dict[str, pd.DataFrame]) -> None:
    """Raise if an image appears in more than one split: its test figures would measure memory, not learning."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(splits[a]["image"]) & set(splits[b]["image"]))
            if shared:
                row = splits[b].loc[splits[b]["image"] == shared[0], "row"].iloc[0]
                raise CellstError(
                    f"{len(shared)} images appear in both the {a} and the {b} split, e.g. {shared[0]} "
                    f"({where(splits[b].attrs.get('path'), row)}). Split by image so no image is in two splits "
                    "(`cellst prepare` does), or pass --allow-leakage if this is intended.")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CellstError(f"Split file not found: {path}. Check the path given to --train/--val/--test/--split.")
    try:
        frame = pd.read_csv(path, encoding="utf-8", keep_default_na=True)
    except UnicodeDecodeError:
        raise CellstError(_not_utf8(path)) from None
    except pd.errors.EmptyDataError:
        raise CellstError(f"{path} is empty. Expected a header line (image_path,caption,similarity) and data rows.")
    except pd.errors.ParserError as exc:
        raise CellstError(f"{path} is not a readable CSV: {exc}. Quote captions that contain commas.")
    if frame.empty:
        raise CellstError(f"{path} has a header but no data rows. Add rows of image_path,caption,similarity.")
    return frame


def _not_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 sits (row and column) and the text around it, read as Latin-1."""
    import csv

    data = path.read_bytes()
    try:
        data.decode("utf-8")
        return f"{path} is not UTF-8 text. Save it as UTF-8 (in a spreadsheet: 'CSV UTF-8')."
    except UnicodeDecodeError as exc:
        lines = data[:exc.start].decode("latin-1").split("\n")
        header = next(csv.reader([data.split(b"\n")[0].decode("latin-1")]), [])
        field = len(next(csv.reader([lines[-1]]), [""])) - 1 if lines[-1] else 0
        place = f"row {len(lines)}" + (f", column '{header[field]}'" if field < len(header) else "")
        place = "the header (row 1)" if len(lines) == 1 else place
        text = (lines[-1] + data[exc.start:exc.start + 20].decode("latin-1")).split("\n")[0][-60:]
        return (f"{path} is not UTF-8 text: {place} has byte 0x{data[exc.start]:02x} ({exc.reason}) "
                f"in '{text}'. The file was probably saved as Latin-1 or Windows-1252. Save it as UTF-8 (in a "
                "spreadsheet: 'CSV UTF-8'), or convert it: iconv -f latin1 -t utf-8 in.csv > out.csv.")


def _require_columns(frame: pd.DataFrame, path: Path, columns: Columns) -> None:
    required = {"image": columns.image, "caption": columns.caption, "label": columns.label}
    for role, name in required.items():
        if name not in frame.columns:
            close = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=1)
            hint = f" Did you mean '{close[0]}'? Pass --{role}-column {close[0]}." if close else \
                f" Rename a column, or name yours with --{role}-column."
            raise CellstError(f"{path} has no '{name}' column (the {role} column); found: "
                              f"{', '.join(map(str, frame.columns))}.{hint}")


def _resolve(value, root: Path, csv: Path, row: int, column: str, allow_outside_root: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CellstError(f"Empty image path at {where(csv, row, column)}. Every row needs an image file.")
    p = Path(value.strip()).expanduser()
    full = p if p.is_absolute() else root / p
    # Judged on the path as written (``..`` collapsed, links not followed): a symlinked data folder the user made
    # inside the root is theirs to trust; what a CSV names outside the root is not.
    if not allow_outside_root and not Path(os.path.abspath(full)).is_relative_to(os.path.abspath(root)):
        raise CellstError(f"Image path '{value}' at {where(csv, row, column)} leaves the image root {os.path.abspath(root)} (it "
                          f"points to {os.path.abspath(full)}). cellst reads images only under the root, so that a CSV "
                          "cannot make it open other files. Move the images under the root (or give --image-root, the "
                          "folder the paths are relative to), or pass --allow-outside-root if you trust this CSV.")
    return str(full.resolve())


def _captions(series: pd.Series, path: Path, column: str) -> pd.Series:
    text = series.astype("string").str.strip()
    missing = series.index[text.isna() | (text == "")].tolist()
    if missing:
        rows = [i + 2 for i in missing]
        raise CellstError(f"{len(rows)} empty captions in {where(path, column=column)} (rows {_rows(rows)}). "
                          "Fill them in or delete those rows.")
    return text.astype(str)


def _labels(series: pd.Series, path: Path, column: str, float_labels: bool) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    allowed = values.between(0, 1) if float_labels else values.isin([0, 1])
    bad = series.index[~allowed.fillna(False).astype(bool)].tolist()
    if bad:
        first = bad[0]
        expected = "a number in [0, 1]" if float_labels else "0 or 1"
        raise CellstError(f"{len(bad)} labels in {where(path, column=column)} are not {expected} "
                          f"(rows {_rows([i + 2 for i in bad])}; row {first + 2} has '{series[first]}'). "
                          "Use 1 for a caption that describes the image and 0 for one that does not.")
    return values.astype(float)


def _warn_duplicates(frame: pd.DataFrame, path: Path) -> None:
    dup = frame.duplicated(["image", "caption", "label"], keep="first")
    if dup.any():
        warnings.warn(f"{path}: {int(dup.sum())} duplicate rows (rows {_rows(frame.loc[dup, 'row'].tolist())}) are "
                      "kept; duplicates weigh those pairs more in training.", stacklevel=3)
    clash = frame.groupby(["image", "caption"])["label"].nunique()
    if (clash > 1).any():
        image, caption = clash[clash > 1].index[0]
        raise CellstError(f"{path}: the caption '{caption}' is labelled both 1 and 0 for {image}. "
                          "A caption either describes an image or not; fix one of the rows.")


def known_true(frame: pd.DataFrame, images: list[str], captions: list[str]) -> np.ndarray:
    """``[i, j]`` is True when the split says ``captions[j]`` is true of ``images[i]``.

    A caption is true of an image when the split has that (image, caption) as a positive, or, where the split has
    ``descriptor`` and ``value`` columns, when the image has a positive of the same descriptor value in other words:
    "Cell type: blast." and "This white blood cell is a blast." say one thing, so an image captioned with either
    makes both true. Without those columns (or for a text stated with two different values) only the text counts.
    """
    by_text = _meanings(frame).groupby(frame["caption"])
    key_of = by_text.first()
    key_of = key_of.where(by_text.nunique() == 1, "text:" + key_of.index.to_series())
    positive = frame["label"] == 1
    pos_keys = frame.loc[positive, "caption"].map(key_of)
    key_ids = {k: n for n, k in enumerate(dict.fromkeys(key_of))}
    image_ids = {p: n for n, p in enumerate(images)}
    by_image = np.zeros((len(images), len(key_ids)), bool)
    for image, key in zip(frame.loc[positive, "image"], pos_keys):
        if image in image_ids:
            by_image[image_ids[image], key_ids[key]] = True
    columns = np.array([key_ids.get(key_of.get(c), -1) for c in captions], dtype=int)
    out = by_image[:, np.maximum(columns, 0)]
    out[:, columns < 0] = False  # a caption the split never mentions is known true of nothing
    return out


def _meanings(frame: pd.DataFrame) -> pd.Series:
    """What each row's caption states: ``descriptor=value`` where both are given, else the caption's own text."""
    text = "text:" + frame["caption"]
    if "value" not in frame or "descriptor" not in frame:
        return text
    value, descriptor = frame["value"].fillna(""), frame["descriptor"].fillna("")  # frames of several splits
    return text.where((value == "") | (descriptor == ""), descriptor + "=" + value)
