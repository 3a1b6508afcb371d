"""Importers for the other seeds' layouts, into the same thesis-format splits as :func:`cellst.prepare.prepare`.

* MiniCLIP's ``captions.json``: a list of ``{"file_name", "caption"}``, several captions per image.
* CLIVP-Cervix's folder per class (``root/CLASS/*.png``) plus a description file (class -> descriptions).

Both are re-exported by :mod:`cellst.prepare`. Negatives are captions that belong to other images or classes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .errors import CellstError
from .prepare_split import ImageRows, read_mapping, write_splits


def from_captions_json(path, image_root, out_dir, *, negatives_per_image: int = 1, ratios=(0.8, 0.1, 0.1),
                       seed: int = 42, overwrite: bool = False) -> dict[str, Path]:
    """Split a MiniCLIP ``captions.json`` by image into thesis-format CSVs (``descriptor`` is "caption").

    Every caption of an image is a positive row; each negative is a caption of another image that this image does
    not have. ``image_root`` is the folder ``file_name`` is relative to (default: the JSON file's folder).

    Example:
        >>> from_captions_json("data/captions.json", "data/images", "splits")  # doctest: +SKIP
    """
    path = Path(path)
    captions = _read_captions(path)
    root = Path(image_root) if image_root else path.parent
    _check_exist({name: root / name for name in captions}, f"{path} (file_name)", root)
    pool = sorted({c for own in captions.values() for c in own})
    rng = np.random.default_rng(seed)
    images = []
    for name, own in captions.items():
        # No value: each caption is its own statement, true only of the images it was written for.
        rows = [(c, 1, "caption", "") for c in own]
        rows += [(c, 0, "caption", "") for c in _others(pool, set(own), negatives_per_image, rng)]
        images.append(ImageRows(root / name, None, rows))
    info = {"source": str(path), "descriptors": ["caption"], "negatives_per_image": negatives_per_image}
    return write_splits(images, out_dir, ratios=ratios, seed=seed, overwrite=overwrite, info=info)


def from_class_folders(root, descriptions, out_dir, *, class_column: str = "class", negatives_per_image: int = 1,
                       ratios=(0.8, 0.1, 0.1), seed: int = 42, overwrite: bool = False) -> dict[str, Path]:
    """Split a folder-per-class image set (``root/CLASS/*.png``) into thesis-format CSVs, stratified by class.

    ``descriptions`` (JSON/YAML file or dict) maps each class folder name to one or more descriptions. Positives are
    all of an image's own class's descriptions; each negative is a description of another class. ``descriptor`` is
    "class" and the class is written to ``class_column``.

    Example:
        >>> from_class_folders("cervix-dataset", "descriptions.json", "splits")  # doctest: +SKIP
    """
    root = Path(root)
    texts = _read_descriptions(descriptions)
    files = _class_images(root)
    _check_described(files, texts, _name(descriptions), root)
    rng = np.random.default_rng(seed)
    images = [ImageRows(path, cls, _class_rows(cls, texts, negatives_per_image, rng))
              for cls, found in files.items() for path in found]
    info = {"source": str(root), "descriptions": _name(descriptions), "descriptors": ["class"],
            "negatives_per_image": negatives_per_image}
    return write_splits(images, out_dir, class_column=class_column, ratios=ratios, seed=seed,
                        overwrite=overwrite, info=info)


def _class_images(root: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files (sub-folders included), for every non-hidden folder with images."""
    from .images import IMAGE_EXTENSIONS

    if not root.is_dir():
        raise CellstError(f"Class folder root not found: {root}. Expected a folder with one sub-folder per class.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {f.name: sorted(p for p in f.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) for f in folders}
    files = {c: found for c, found in files.items() if found}
    if not files:
        raise CellstError(f"{root}: no images found; expected root/CLASS/image files ({', '.join(IMAGE_EXTENSIONS)}).")
    return files


def _check_described(files: dict, texts: dict, source: str, root: Path) -> None:
    undescribed = sorted(set(files) - set(texts))
    if undescribed:
        raise CellstError(f"{source}: no description for class folder(s) {', '.join(undescribed)} in {root}; "
                          f"it describes: {', '.join(sorted(texts)) or 'nothing'}. "
                          "Add an entry per class folder (folder name -> list of descriptions).")
    unused = sorted(set(texts) - set(files))
    if unused:
        warnings.warn(f"{source}: no image folder in {root} for {', '.join(unused)}; their descriptions are used "
                      "only as negatives.", stacklevel=3)


def _class_rows(cls: str, texts: dict, negatives: int, rng) -> list[tuple[str, int, str, str]]:
    """All of the class's descriptions as positives; negatives drawn class first, then description, no repeats.

    A description the own class shares is never a negative: it would be a caption labelled both 1 and 0.
    """
    rows = [(t, 1, "class", cls) for t in texts[cls]]  # every description of a class is true of all its images
    unused = {c: [t for t in texts[c] if t not in texts[cls]] for c in sorted(texts) if c != cls}
    while len(rows) < len(texts[cls]) + negatives:
        choices = [c for c in unused if unused[c]]
        if not choices:
            break
        other = choices[int(rng.integers(len(choices)))]
        text = unused[other].pop(int(rng.integers(len(unused[other]))))
        if all(text != row[0] for row in rows):  # two other classes may share a description
            rows.append((text, 0, "class", other))
    return rows


def _read_captions(path: Path) -> dict[str, list[str]]:
    """file_name -> its distinct captions, in file order; every entry is checked."""
    if not path.is_file():
        raise CellstError(f"Captions file not found: {path}. Expected MiniCLIP's captions.json.")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CellstError(f"Cannot parse {path} as JSON: {exc}.") from None
    if not isinstance(entries, list) or not entries:
        raise CellstError(f"{path}: expected a non-empty list of {{\"file_name\": ..., \"caption\": ...}} entries, "
                          f"found {type(entries).__name__ if entries else 'nothing'}.")
    captions: dict[str, list[str]] = {}
    for k, entry in enumerate(entries, 1):
        ok = isinstance(entry, dict) and all(isinstance(entry.get(f), str) and entry[f].strip()
                                             for f in ("file_name", "caption"))
        if not ok:
            raise CellstError(f"{path}, entry {k}: expected {{\"file_name\": \"<image>\", \"caption\": \"<text>\"}} "
                              f"with non-empty strings, found {entry!r}. Fix or remove that entry.")
        own = captions.setdefault(entry["file_name"].strip(), [])
        if entry["caption"].strip() not in own:
            own.append(entry["caption"].strip())
    return captions


def _read_descriptions(descriptions) -> dict[str, list[str]]:
    raw = read_mapping(descriptions, "Class descriptions")
    texts = {}
    for cls, value in raw.items():
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value or not all(isinstance(t, str) and t.strip() for t in value):
            raise CellstError(f"{_name(descriptions)}, class '{cls}': expected a description or a list of them, "
                              f"found {value!r}.")
        texts[str(cls)] = list(dict.fromkeys(t.strip() for t in value))
    return texts


def _others(pool: list[str], own: set, k: int, rng) -> list[str]:
    """Up to ``k`` distinct captions from ``pool`` outside ``own``; rejection sampling, as ``own`` is tiny."""
    picked: list[str] = []
    budget = 20 * k + 20
    while len(picked) < min(k, len(pool) - len(own)) and budget:
        budget -= 1
        caption = pool[int(rng.integers(len(pool)))]
        if caption not in own and caption not in picked:
            picked.append(caption)
    return picked


def _check_exist(paths: dict[str, Path], source: str, root: Path) -> None:
    missing = [name for name, p in paths.items() if not p.is_file()]
    if missing:
        raise CellstError(f"{source}: {len(missing)} image(s) not found under {root}, e.g. {', '.join(missing[:5])}. "
                          "Pass the folder the file names are relative to as image_root (--image-root).")


def _name(source) -> str:
    return "class descriptions" if isinstance(source, dict) else str(source)
