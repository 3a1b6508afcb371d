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
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CellstError, where
from .images import check_image

MAX_LISTED = 20  # problems listed in one error message; the rest are counted


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
               float_labels: bool = False, allow_outside_root: bool = True) -> pd.DataFrame:
    """Read one CSV split into a frame with canonical columns and absolute image paths.

    Image paths are resolved against ``image_root`` when given, else against the CSV's own folder. ``row`` holds the
    1-based line number in the file (the header is line 1), so messages point where a spreadsheet shows the row.
    Labels must be 0 or 1, or any value in [0, 1] when ``float_labels`` (the cosine loss).
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
                allow_outside_root: bool = True, check_images: bool = True) -> dict[str, pd.DataFrame]:
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


def check_all_images(splits: dict[str, pd.DataFrame], workers: int = 8) -> None:
    """Decode every distinct image once; list every missing or undecodable one (file, CSV, row) in one error."""
    from tqdm.auto import tqdm

    first_use: dict[str, tuple[str, int]] = {}
    for frame in splits.values():
        for image, row in zip(frame["image"], frame["row"]):
            first_use.setdefault(image, (frame.attrs.get("path", "?"), row))
    images = list(first_use)
    # Decoding is I/O and C code that releases the GIL, so threads overlap well even on two cores.
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(tqdm(pool.map(check_image, images), total=len(images), desc="Checking images",
                            disable=len(images) < 500, leave=False))
    bad = [(img, why) for img, why in zip(images, reasons) if why]
    if bad:
        lines = [f"  {img}: {why} (first used in {first_use[img][0]}, row {first_use[img][1]})"
                 for img, why in bad[:MAX_LISTED]]
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise CellstError(f"{len(bad)} of {len(images)} images cannot be used:\n" + "\n".join(lines) + more +
                          "\nFix the paths in the CSV (they are resolved against the CSV's folder, or --image-root), "
                          "or remove those rows, then run again.")


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
    except UnicodeDecodeError as exc:
        raise CellstError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Save it as UTF-8 "
                          "(in a spreadsheet: 'CSV UTF-8'), or convert it: iconv -f latin1 -t utf-8 in.csv > out.csv.")
    except pd.errors.EmptyDataError:
        raise CellstError(f"{path} is empty. Expected a header line (image_path,caption,similarity) and data rows.")
    except pd.errors.ParserError as exc:
        raise CellstError(f"{path} is not a readable CSV: {exc}. Quote captions that contain commas.")
    if frame.empty:
        raise CellstError(f"{path} has a header but no data rows. Add rows of image_path,caption,similarity.")
    return frame


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
    full = (p if p.is_absolute() else root / p).resolve()
    if not allow_outside_root and not full.is_relative_to(root.resolve()):
        raise CellstError(f"Image path {value} at {where(csv, row, column)} leaves the image root {root}. "
                          "Move the image under the root, or pass --allow-outside-root if you trust this CSV.")
    return str(full)


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
    meaning = _meanings(frame)
    key_of = meaning.groupby(frame["caption"]).agg(lambda keys: keys.iloc[0] if keys.nunique() == 1 else None)
    key_of = key_of.where(key_of.notna(), "text:" + key_of.index.to_series())
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


def _rows(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:10]))
    return shown + (f", ... ({len(rows)} in all)" if len(rows) > 10 else "")
