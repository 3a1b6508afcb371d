"""A persistent, incremental embedding index over a folder of images, for :mod:`cellst.search`.

What it is for: embed a folder of microscopy images once, search it many times, and on later runs embed only the files
that are new or changed. What it is not: an approximate-nearest-neighbour database; the vectors live in one ``.npy``
file that search loads whole (fine up to a few million images).

An index folder holds three files:

==================  ===================================================================================================
``embeddings.npy``  float32 ``(n, dim)``, L2-normalised; row ``i`` belongs to manifest row ``i``
``manifest.csv``    ``path`` (relative to the images folder, ``/``-separated), ``size``, ``mtime_ns``, ``sha1`` (empty
                    unless built with ``checksum=True``), ``row``; sorted by path
``index.json``      model id, embedding dim, model fingerprint, images folder, cellst version, times, and the size and
                    SHA-1 of the other two files (written last: it is the commit point, see :func:`_write_index`)
==================  ===================================================================================================

Example::

    from cellst.index import build_index, load_index
    stats = build_index("cells/", "my-finetuned-clip/", "cells.index")
    print(stats)  # added 120, updated 0, removed 0, unchanged 0
    index = load_index("cells.index")
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CellstError
from .images import IMAGE_EXTENSIONS
from .index_io import decoded_batches, fingerprint, fingerprints_match, resolve_model, sha1_file, write_atomic

FORMAT = 1
FILES = ("embeddings.npy", "manifest.csv")
MANIFEST_COLUMNS = ["path", "size", "mtime_ns", "sha1", "row"]


@dataclass
class IndexStats:
    """What a :func:`build_index` run did; ``skipped`` maps unreadable files to the reason (they are retried next run)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"added {self.added}, updated {self.updated}, removed {self.removed}, unchanged {self.unchanged}"
        return text + (f", skipped {len(self.skipped)} unreadable" if self.skipped else "")


@dataclass
class Index:
    """A loaded index: ``embeddings[i]`` is the normalised embedding of ``images_dir / paths[i]``."""

    root: Path
    embeddings: np.ndarray
    manifest: pd.DataFrame
    meta: dict
    # Structures built from the embeddings on demand (e.g. a faiss index), reused across searches.
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def paths(self) -> list[str]:
        return self.manifest["path"].tolist()

    @property
    def images_dir(self) -> Path:
        return Path(self.meta["images_dir"])

    @property
    def model_id(self) -> str:
        return self.meta["model"]

    def abspath(self, rel: str) -> Path:
        return self.images_dir / rel

    def __len__(self) -> int:
        return len(self.manifest)


def build_index(images_dir, model, out, batch_size: int = 64, workers: int = 2, rebuild: bool = False,
                checksum: bool = False, progress: bool = True, model_id: str | None = None) -> IndexStats:
    """Embed every image under ``images_dir`` (recursively) into the index folder ``out``; return what changed.

    Args:
        images_dir: folder of images; files with an extension in :data:`cellst.images.IMAGE_EXTENSIONS` are indexed.
        model: a loaded image-text SentenceTransformer, or its hub id / folder (then loaded here).
        out: index folder; created if missing. If it holds an index, only new or changed files (size or mtime
            differ) are embedded and removed files are dropped.
        batch_size: images per ``model.encode`` call.
        workers: threads decoding the next batches while the model encodes the current one (0: decode inline).
        rebuild: start from scratch instead of refusing an index made by another model or from another folder.
        checksum: also store each file's SHA-1; a file whose size/mtime changed but whose bytes did not is then not
            re-embedded (e.g. after a copy that reset mtimes).
        model_id: the id recorded in ``index.json``; by default the name the model was loaded from.
    """
    images_dir = _check_images_dir(images_dir)
    model, model_id = resolve_model(model, model_id)
    out = Path(out)
    old = None if rebuild or not (out / "index.json").exists() else load_index(out)
    probe = fingerprint(model)
    if old is not None:
        _check_compatible(old, images_dir, model_id, probe)
    current = _scan(images_dir)
    plan = _plan(current, old, images_dir, checksum)
    vectors, skipped = _embed(model, images_dir, plan["todo"], batch_size, workers, progress)
    if not vectors and not plan["keep"]:
        raise CellstError(f"None of the {len(current)} images under {images_dir} could be decoded, e.g. "
                          f"{next(iter(skipped.items()))}. Check the files or the folder.")
    manifest, embeddings, stats = _assemble(current, old, plan, vectors)
    stats.skipped = skipped
    if old is None or not _same(manifest, old) or old.model_id != model_id:
        meta = _meta(old, model_id, probe, embeddings, images_dir)
        _write_index(out, embeddings, manifest, meta)
    return stats


def load_index(path) -> Index:
    """Read an index folder written by :func:`build_index`, checking its files against ``index.json``."""
    root = Path(path)
    meta_path = root / "index.json"
    if not meta_path.is_file():
        raise CellstError(f"{root} is not a cellst index: expected {meta_path}. Build one with "
                          f"`cellst index IMAGES_DIR --model MODEL --out {root}`.")
    meta = json.loads(meta_path.read_text())
    for name in FILES:
        expected, file = meta["files"][name], root / name
        if not file.is_file() or file.stat().st_size != expected["bytes"] or sha1_file(file) != expected["sha1"]:
            raise CellstError(f"Index {root} is inconsistent: {name} does not match index.json (an interrupted write "
                              "or a hand edit). Rebuild it with `cellst index IMAGES_DIR --model MODEL --out "
                              f"{root} --rebuild`.")
    manifest = pd.read_csv(root / "manifest.csv", dtype={"path": str, "sha1": str}, keep_default_na=False)
    return Index(root, np.load(root / "embeddings.npy"), manifest, meta)


def _check_images_dir(images_dir) -> Path:
    images_dir = Path(images_dir).resolve()
    if not images_dir.is_dir():
        raise CellstError(f"Images folder {images_dir} does not exist or is not a folder; pass the folder that "
                          "holds your images.")
    return images_dir


def _check_compatible(old: Index, images_dir: Path, model_id: str, probe: dict) -> None:
    """Refuse to mix embeddings of two models, or two folders, in one index."""
    fix = "Use another --out folder, or pass --rebuild (rebuild=True) to re-embed everything."
    if not fingerprints_match(old.meta["fingerprint"], probe):
        raise CellstError(f"Index {old.root} was built with model '{old.model_id}' but the model given now "
                          f"('{model_id}') embeds differently (another model, or the same one retrained), so its "
                          f"vectors cannot be mixed with the index's. {fix}")
    if old.images_dir != images_dir:
        raise CellstError(f"Index {old.root} indexes the folder {old.images_dir}, not {images_dir}. {fix}")
    if old.model_id != model_id:
        warnings.warn(f"Index {old.root} was built with '{old.model_id}'; '{model_id}' embeds identically, so the "
                      "index is kept and now records the new id.", stacklevel=3)


def _scan(images_dir: Path) -> pd.DataFrame:
    """Every image file under ``images_dir``, sorted by relative path (the row order of the index)."""
    rows = []
    for p in sorted(images_dir.rglob("*")):
        rel = p.relative_to(images_dir)
        # Hidden files and folders (.ipynb_checkpoints, editor and temp files) are not part of the collection.
        if p.suffix.lower() in IMAGE_EXTENSIONS and not any(part.startswith(".") for part in rel.parts) and p.is_file():
            st = p.stat()
            rows.append((rel.as_posix(), st.st_size, st.st_mtime_ns))
    if not rows:
        raise CellstError(f"No images found under {images_dir} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}).")
    return pd.DataFrame(rows, columns=["path", "size", "mtime_ns"])


def _plan(current: pd.DataFrame, old: Index | None, images_dir: Path, checksum: bool):
    """Which old rows to keep (path -> row) and which files to embed; a file is kept if its size and mtime, or with
    ``checksum`` its SHA-1, are as recorded."""
    previous = {} if old is None else {r.path: r for r in old.manifest.itertuples(index=False)}
    keep, todo, sha1 = {}, [], {}
    for path, size, mtime in current[["path", "size", "mtime_ns"]].itertuples(index=False):
        was = previous.get(path)
        same_stat = was is not None and (was.size, was.mtime_ns) == (size, mtime)
        # Hash only what size and mtime cannot vouch for: re-reading every file each run would defeat the index.
        sha1[path] = "" if not checksum else was.sha1 if same_stat and was.sha1 else sha1_file(images_dir / path)
        if same_stat or (was is not None and checksum and was.sha1 == sha1[path]):
            keep[path] = was.row
        else:
            todo.append(path)
    return {"previous": previous, "keep": keep, "todo": todo, "sha1": sha1}


def _embed(model, images_dir: Path, todo: list[str], batch_size: int, workers: int,
           progress: bool) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Embed the files in ``todo``; return path -> vector and, for files that would not decode, path -> reason."""
    from tqdm.auto import tqdm

    from .model import encode_images

    vectors, skipped = {}, {}
    with tqdm(total=len(todo), desc="Embedding images", unit="img", disable=not progress or not todo) as bar:
        # Decoding runs ahead in threads while the model encodes the current batch.
        for batch in decoded_batches(todo, lambda rel: images_dir / rel, batch_size, workers):
            good = [(p, im) for p, im in batch if not isinstance(im, str)]
            skipped.update((p, im) for p, im in batch if isinstance(im, str))
            if good:
                embedded = encode_images(model, [im for _, im in good], batch_size=batch_size)
                vectors.update((p, v.astype(np.float32)) for (p, _), v in zip(good, embedded))
            bar.update(len(batch))
    if skipped:
        examples = "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:3])
        warnings.warn(f"Skipped {len(skipped)} unreadable image(s), left out of the index and retried on the next "
                      f"run: {examples}", stacklevel=3)
    return vectors, skipped


def _assemble(current: pd.DataFrame, old: Index | None, plan: dict, vectors: dict[str, np.ndarray]):
    """The new manifest and embeddings, sorted by path: kept rows copied byte for byte, new vectors filled in."""
    manifest = current[current["path"].isin(plan["keep"].keys() | vectors.keys())].reset_index(drop=True)
    manifest["sha1"] = manifest["path"].map(plan["sha1"])
    manifest["row"] = np.arange(len(manifest))
    dim = old.embeddings.shape[1] if old is not None else next(iter(vectors.values())).shape[0]
    embeddings = np.empty((len(manifest), dim), np.float32)
    for row, path in enumerate(manifest["path"]):
        embeddings[row] = old.embeddings[plan["keep"][path]] if path in plan["keep"] else vectors[path]
    previous = plan["previous"]
    stats = IndexStats(added=sum(p not in previous for p in vectors), updated=sum(p in previous for p in vectors),
                       removed=len(previous.keys() - set(manifest["path"])), unchanged=len(plan["keep"]))
    return manifest[MANIFEST_COLUMNS], embeddings, stats


def _same(manifest: pd.DataFrame, old: Index) -> bool:
    return manifest.reset_index(drop=True).equals(old.manifest[MANIFEST_COLUMNS].reset_index(drop=True))


def _meta(old: Index | None, model_id: str, probe: dict, embeddings: np.ndarray, images_dir: Path) -> dict:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"format": FORMAT, "model": model_id, "dim": int(embeddings.shape[1]), "count": len(embeddings),
            "images_dir": str(images_dir), "cellst_version": _version(),
            "created": old.meta["created"] if old is not None else now, "updated": now, "fingerprint": probe}


def _write_index(out: Path, embeddings: np.ndarray, manifest: pd.DataFrame, meta: dict) -> None:
    """Replace the index files one by one via temp file + rename, ``index.json`` last.

    Each file is always either the old or the new version. ``index.json`` records the size and SHA-1 of the others,
    so if a run dies between two renames, :func:`load_index` sees the mismatch instead of pairing rows wrongly.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "embeddings.npy", lambda f: np.save(f, embeddings, allow_pickle=False))
    write_atomic(out / "manifest.csv", lambda f: f.write(manifest.to_csv(index=False).encode()))
    meta["files"] = {name: {"bytes": (out / name).stat().st_size, "sha1": sha1_file(out / name)} for name in FILES}
    write_atomic(out / "index.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellst")
    except PackageNotFoundError:
        return "unknown"
