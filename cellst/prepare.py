"""From an attribute table and caption templates to thesis-format train/val/test CSVs.

The thesis annotated each image with morphology descriptors (cell size, nuclear shape, ...) and turned them into
captions with templates: one positive row per annotated descriptor, one negative row per image made by swapping one
descriptor's value for a wrong one, split by image. :func:`prepare` does that for any table of that shape, including
WBCAtt's. The importers for MiniCLIP's captions.json and for class folders live in :mod:`cellst.prepare_import` and are
re-exported here. This module does not read or check pixels; it only checks that the image files exist.

Output CSV columns:

============  ==========================================================================
image_path    path of the image, relative to the CSV's folder
caption       the caption text
similarity    1 = the caption is true of the image, 0 = a negative (one descriptor swapped)
descriptor    which descriptor the caption is about (for per-descriptor recall)
<class>       the class column, under its own name, when ``class_column`` is given
============  ==========================================================================
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import CellstError, where
from .prepare_import import from_captions_json, from_class_folders
from .prepare_split import COLUMNS, ImageRows, read_mapping, write_splits

__all__ = ["prepare", "read_templates", "complete_templates", "caption_rows", "from_captions_json",
           "from_class_folders"]


def prepare(attributes, templates, out_dir, *, image_column: str = "image_path", class_column: str | None = None,
            descriptors=None, negatives_per_image: int = 1, ratios=(0.8, 0.1, 0.1), seed: int = 42,
            image_root=None, overwrite: bool = False) -> dict[str, Path]:
    """Write ``train_split.csv``, ``val_split.csv``, ``test_split.csv`` and ``split_summary.json`` to ``out_dir``.

    Args:
        attributes: CSV path or DataFrame, one row per image: an image column, descriptor columns, optionally a class
            column. An empty cell means "not annotated": no caption is made for it.
        templates: JSON/YAML path or dict, descriptor -> list of templates containing ``{value}`` (and optionally
            ``{descriptor}``). A descriptor without templates gets "The {descriptor} is {value}.".
        out_dir: output folder; must be new or empty unless ``overwrite``.
        image_column: the column holding image paths, relative to the CSV's folder or to ``image_root``.
        class_column: optional class column: the split is stratified by it and it is copied to the output.
        descriptors: the columns to caption; default all columns but the image column, and but the class column
            unless the templates give it templates.
        negatives_per_image: negative rows per image, each swapping one descriptor's value.
        ratios: train, val, test fractions of the images. seed: the split's and the templates' random seed.

    Returns:
        ``{"train": path, "val": path, "test": path}``.

    Example:
        >>> prepare("wbcatt.csv", "templates.json", "splits",
        ...         image_column="img_name", class_column="label")  # doctest: +SKIP
    """
    table, source, base = load_table(attributes)
    given, template_source = read_templates(templates)
    descriptors = check_columns(table, source, image_column, class_column, descriptors, set(given))
    templates = complete_templates(given, descriptors, template_source)
    paths = image_paths(table, image_column, Path(image_root) if image_root else base, source)
    labels = class_labels(table, class_column, source)
    values = {d: table[d].map(_clean).tolist() for d in descriptors}
    pool = {d: sorted({v for v in values[d] if v}) for d in descriptors}
    rng = np.random.default_rng(seed)
    images = []
    for i, path in enumerate(paths):
        own = {d: values[d][i] for d in descriptors if values[d][i]}
        images.append(ImageRows(path, labels[i], caption_rows(own, pool, templates, negatives_per_image, rng)))
    info = {"source": str(source), "descriptors": descriptors, "negatives_per_image": negatives_per_image}
    return write_splits(images, out_dir, class_column=class_column, ratios=ratios, seed=seed,
                        overwrite=overwrite, info=info)


def caption_rows(own: dict, pool: dict, templates: dict, negatives: int, rng) -> list[tuple[str, int, str, str]]:
    """Positive rows for an image's annotated descriptors, then up to ``negatives`` rows that each swap one value.

    ``own`` maps the image's annotated descriptors to values; ``pool`` maps each descriptor to every value it takes
    in the table. A negative's descriptor is drawn uniformly among those with another value, then the wrong value;
    the same (descriptor, value) is not used twice for one image, and a negative never reads like a true caption
    (templates shared between descriptors could make it so).
    """
    rows = [(render(_pick(templates[d], rng), d, v), 1, d, v) for d, v in own.items()]
    true = {render(t, d, v) for d, v in own.items() for t in templates[d]}
    unused = {d: [w for w in pool[d] if w != v] for d, v in own.items()}
    while len(rows) < len(own) + negatives:
        choices = [d for d in own if unused[d]]
        if not choices:
            break
        d = choices[rng.integers(len(choices))]
        wrong = unused[d].pop(int(rng.integers(len(unused[d]))))
        captions = [c for c in (render(t, d, wrong) for t in templates[d]) if c not in true]
        if captions:
            rows.append((_pick(captions, rng), 0, d, wrong))
    return rows


def render(template: str, descriptor: str, value: str) -> str:
    """Fill a template (plain replacement, so other braces in the text are left alone)."""
    return template.replace("{descriptor}", descriptor.replace("_", " ")).replace("{value}", value)


def _pick(options: list, rng):
    return options[int(rng.integers(len(options)))]


def _clean(value) -> str:
    """A cell as text; NaN, None and blanks become "" (not annotated)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def load_table(attributes):
    """(DataFrame of strings, name for messages, folder that relative image paths start from)."""
    import pandas as pd

    if isinstance(attributes, pd.DataFrame):
        return attributes.reset_index(drop=True), "the attribute table", Path.cwd()
    path = Path(attributes)
    if not path.is_file():
        raise CellstError(f"Attribute table not found: {path}. Expected a CSV with one row per image; check the path.")
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except Exception as exc:  # pandas raises several types for malformed CSVs
        raise CellstError(f"Cannot read attribute table {path} as CSV: {exc}.") from None
    return table, path, path.parent


def check_columns(table, source, image_column: str, class_column: str | None, descriptors,
                  templated: set = frozenset()) -> list[str]:
    """Check the named columns exist and the table has rows; return the descriptor columns.

    By default every column but the image and class columns is a descriptor; the class column is one too when it has
    templates (``templated``), so "This is a neutrophil." captions come from the same table.
    """
    found = ", ".join(map(str, table.columns))
    named = [image_column, *([class_column] if class_column else [])]
    if isinstance(descriptors, str):
        descriptors = [d.strip() for d in descriptors.split(",") if d.strip()]
    for column in named + list(descriptors or []):
        if column not in table.columns:
            raise CellstError(f"{where(source, column=column)}: column not found; the table has: {found}. "
                              "Fix the column name (--image-column, --class-column, --descriptors) or the CSV header.")
    if descriptors is None:
        descriptors = [c for c in table.columns if c not in named or (c == class_column and c in templated)]
    if not descriptors:
        raise CellstError(f"{source}: no descriptor columns; expected columns besides {', '.join(named)}; "
                          f"found only: {found}. Add one column per descriptor.")
    if class_column in COLUMNS:
        raise CellstError(f"{where(source, column=class_column)}: a class column cannot be named like an output "
                          f"column ({', '.join(COLUMNS)}). Rename it in the CSV.")
    if len(table) == 0:
        raise CellstError(f"{source}: the table has a header but no rows; expected one row per image.")
    return list(descriptors)


def read_templates(templates) -> tuple[dict[str, list[str]], str]:
    """Checked templates (descriptor -> list of strings with ``{value}``) and a name for messages."""
    raw = read_mapping(templates, "Templates")
    source = "templates" if isinstance(templates, dict) else str(templates)
    checked = {}
    for descriptor, options in raw.items():
        options = [options] if isinstance(options, str) else options
        if not isinstance(options, list) or not options or not all(isinstance(t, str) for t in options):
            raise CellstError(f"{source}, descriptor '{descriptor}': expected a list of template strings, "
                              f"found {options!r}. Example: [\"The cell is {{value}}.\"].")
        for k, template in enumerate(options, 1):
            if "{value}" not in template:
                raise CellstError(f"{source}, descriptor '{descriptor}', template {k}: {template!r} has no "
                                  "'{value}' placeholder, so every image would get the same caption. "
                                  "Add {value} where the descriptor's value goes.")
        checked[str(descriptor)] = options
    return checked, source


def complete_templates(given: dict, descriptors: list[str], source: str = "templates") -> dict[str, list[str]]:
    """Templates for exactly ``descriptors``: the default where none are given; a warning for unused ones."""
    unknown = sorted(set(given) - set(descriptors))
    if unknown:
        warnings.warn(f"{source}: templates for {', '.join(unknown)} are not used, as they are not among the "
                      f"descriptors ({', '.join(descriptors)}). Check the spelling, or list them in descriptors "
                      "(--descriptors) to caption them.", stacklevel=3)
    return {d: given.get(d, ["The {descriptor} is {value}."]) for d in descriptors}


def image_paths(table, image_column: str, base: Path, source) -> list[Path]:
    """Absolute image paths; blanks, duplicates and missing files are errors (listed, up to five).

    Rows are numbered as lines of the file (the header is row 1), as a spreadsheet shows them and as
    :func:`cellst.data.read_split` reports them.
    """
    seen, problems, paths = {}, [], []
    for i, raw in enumerate(table[image_column].map(_clean)):
        path = Path(raw) if Path(raw).is_absolute() else base / raw
        if not raw:
            problems.append(f"{where(source, i + 2, image_column)}: empty image path")
        elif raw in seen:
            problems.append(f"{where(source, i + 2, image_column)}: '{raw}' already in row {seen[raw]}; "
                            "expected one row per image")
        elif not path.is_file():
            problems.append(f"{where(source, i + 2, image_column)}: image not found at {path}")
        seen.setdefault(raw, i + 2)
        paths.append(path)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CellstError("; ".join(problems[:5]) + more + f". Image paths are read relative to {base}; "
                          "fix the paths, or pass image_root (--image-root) pointing at the image folder.")
    return paths


def class_labels(table, class_column: str | None, source) -> list:
    if class_column is None:
        return [None] * len(table)
    labels = table[class_column].map(_clean).tolist()
    missing = [i + 2 for i, label in enumerate(labels) if not label]
    if missing:
        raise CellstError(f"{where(source, missing[0], class_column)}: empty class ({len(missing)} rows in all); "
                          "expected a class for every image, since the split is stratified by it. "
                          "Fill it in, or drop --class-column.")
    return labels
