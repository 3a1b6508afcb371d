"""The incremental index (cellst.index), search over it (cellst.search) and their CLI commands."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np
import pytest
from conftest import draw

from cellst.errors import CellstError
from cellst.images import load_rgb
from cellst.index import build_index, load_index
from cellst.search import save_grid, search


def write_images(folder, n, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        colour = ["red", "green", "blue", "yellow"][i % 4]
        draw(colour, "round" if i % 2 else "square", seed=i).save(folder / f"img_{i:02d}.png")


@pytest.fixture
def images(tmp_path):
    write_images(tmp_path / "imgs", 5)
    write_images(tmp_path / "imgs" / "sub", 1, start=5)  # recursion into subfolders
    write_images(tmp_path / "imgs" / ".ipynb_checkpoints", 1, start=6)  # hidden: not indexed
    return tmp_path / "imgs"


def count_drawn_encodes(model, monkeypatch):
    """Count the 16-px test images the model embeds (the index's 64-px model fingerprint is not counted)."""
    seen = []
    encode = model.encode

    def counting(inputs, *args, **kwargs):
        seen.extend(x for x in inputs if getattr(x, "size", None) == (16, 16))
        return encode(inputs, *args, **kwargs)

    monkeypatch.setattr(model, "encode", counting)
    return seen


def rows_by_path(index):
    return {p: index.embeddings[r].tobytes() for p, r in zip(index.manifest["path"], index.manifest["row"])}


def test_index_layout(images, tiny_model, tmp_path):
    stats = build_index(images, tiny_model, tmp_path / "idx", batch_size=4, progress=False)
    index = load_index(tmp_path / "idx")
    assert (stats.added, stats.updated, stats.removed, stats.unchanged) == (6, 0, 0, 0)
    assert index.paths == sorted(index.paths) and "sub/img_05.png" in index.paths
    assert index.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1, atol=1e-5)
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["dim"] == index.embeddings.shape[1] and meta["cellst_version"] and meta["created"]


def test_reindex_embeds_only_changed_files(images, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index(images, tiny_model, out, batch_size=4, progress=False)
    before = rows_by_path(load_index(out))
    (images / "img_00.png").unlink()
    draw("yellow", "round", seed=99).save(images / "img_01.png")
    st = os.stat(images / "img_01.png")
    os.utime(images / "img_01.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # surely a new mtime
    write_images(images, 1, start=7)
    seen = count_drawn_encodes(tiny_model, monkeypatch)

    stats = build_index(images, tiny_model, out, batch_size=4, progress=False)
    after = rows_by_path(load_index(out))
    assert (stats.added, stats.updated, stats.removed, stats.unchanged) == (1, 1, 1, 4)
    assert len(seen) == 2  # only the new and the modified file were embedded
    for path in ("img_02.png", "img_03.png", "img_04.png", "sub/img_05.png"):
        assert after[path] == before[path]
    assert after["img_01.png"] != before["img_01.png"] and "img_00.png" not in after

    index_json = (out / "index.json").read_bytes()
    stats = build_index(images, tiny_model, out, batch_size=4, progress=False)
    assert (stats.added, stats.updated, stats.removed, stats.unchanged) == (0, 0, 0, 6)
    assert len(seen) == 2 and (out / "index.json").read_bytes() == index_json  # nothing embedded or rewritten


def test_checksum_skips_touched_but_identical_files(images, tiny_model, tmp_path, monkeypatch):
    build_index(images, tiny_model, tmp_path / "idx", checksum=True, progress=False)
    os.utime(images / "img_02.png", ns=(1, 10**18))
    seen = count_drawn_encodes(tiny_model, monkeypatch)
    stats = build_index(images, tiny_model, tmp_path / "idx", checksum=True, progress=False)
    assert stats.unchanged == 6 and not seen
    assert load_index(tmp_path / "idx").manifest.set_index("path").loc["img_02.png", "mtime_ns"] == 10**18


def test_index_from_another_model_or_folder_is_refused(images, tiny_model, tmp_path):
    from cellst.scratch import init_model

    build_index(images, tiny_model, tmp_path / "idx", progress=False)
    other = init_model(tmp_path / "other", preset="micro", captions=["The cell is red."] * 5, seed=1)
    with pytest.raises(CellstError, match="built with model"):
        build_index(images, other, tmp_path / "idx", progress=False)
    stats = build_index(images, tmp_path / "other", tmp_path / "idx", rebuild=True, progress=False)
    assert stats.added == 6
    with pytest.raises(CellstError, match="does not embed like"):
        search(tmp_path / "idx", tiny_model, ["The cell is red."])
    # The same weights under another name are the same model: kept, with a warning.
    write_images(tmp_path / "elsewhere", 1)
    with pytest.raises(CellstError, match="indexes the folder .*imgs, not .*elsewhere"):
        build_index(tmp_path / "elsewhere", tmp_path / "other", tmp_path / "idx", progress=False)
    shutil.copytree(tmp_path / "other", tmp_path / "copy")
    with pytest.warns(UserWarning, match="embeds identically"):
        assert build_index(images, tmp_path / "copy", tmp_path / "idx", progress=False).unchanged == 6
    assert load_index(tmp_path / "idx").model_id == str(tmp_path / "copy")


def test_unreadable_image_is_skipped_and_empty_folder_refused(images, tiny_model, tmp_path):
    (images / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="broken.png"):
        stats = build_index(images, tiny_model, tmp_path / "idx", progress=False)
    assert "broken.png" in stats.skipped and stats.added == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(CellstError, match="No images found under .*empty"):
        build_index(tmp_path / "empty", tiny_model, tmp_path / "idx2", progress=False)


def test_interrupted_write_keeps_old_index_and_edits_are_detected(images, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index(images, tiny_model, out, progress=False)
    before = rows_by_path(load_index(out))
    write_images(images, 1, start=8)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cellst.index.np.save", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(images, tiny_model, out, progress=False)
    assert rows_by_path(load_index(out)) == before
    assert sorted(p.name for p in out.iterdir()) == ["embeddings.npy", "index.json", "manifest.csv"]
    (out / "manifest.csv").write_text("path,size,mtime_ns,sha1,row\n")
    with pytest.raises(CellstError, match="inconsistent.*manifest.csv"):
        load_index(out)


def brute_force(model, index, query_vectors, k):
    """Top-k from model.encode directly: re-embed every indexed image and rank by cosine."""
    images = [load_rgb(index.abspath(p)) for p in index.paths]
    corpus = model.encode(images, normalize_embeddings=True)
    scores = query_vectors @ corpus.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(index.paths[j], scores[i, j]) for j in row] for i, row in enumerate(order)]


def test_text_search_equals_brute_force(images, tiny_model, tmp_path):
    build_index(images, tiny_model, tmp_path / "idx", progress=False)
    index = load_index(tmp_path / "idx")
    texts = ["The cell is red.", "The nucleus is round."]
    results = search(index, tiny_model, queries=texts, k=4)
    expected = brute_force(tiny_model, index, tiny_model.encode(texts, normalize_embeddings=True), 4)
    assert [r.query for r in results] == texts
    for result, want in zip(results, expected):
        assert [p for p, _ in result.hits] == [p for p, _ in want]
        np.testing.assert_allclose([s for _, s in result.hits], [s for _, s in want], atol=1e-5)


def test_image_search_finds_itself_first(images, tiny_model, tmp_path):
    build_index(images, tiny_model, tmp_path / "idx", progress=False)
    [result] = search(tmp_path / "idx", tiny_model, images=[images / "img_03.png"], k=3)
    assert result.query == images / "img_03.png"
    assert result.hits[0][0] == "img_03.png" and result.hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(search(tmp_path / "idx", tiny_model, ["x"], k=50)[0].hits) == 6  # k capped at the index size


def test_faiss_backend_gives_the_same_hits(images, tiny_model, tmp_path):
    pytest.importorskip("faiss")
    build_index(images, tiny_model, tmp_path / "idx", progress=False)
    index = load_index(tmp_path / "idx")
    kwargs = dict(queries=["The cell is blue."], images=[images / "img_01.png"], k=4)
    exact, fast = search(index, tiny_model, **kwargs), search(index, tiny_model, backend="faiss", **kwargs)
    for a, b in zip(exact, fast):
        assert [p for p, _ in a.hits] == [p for p, _ in b.hits]
        np.testing.assert_allclose([s for _, s in a.hits], [s for _, s in b.hits], atol=1e-5)


def test_save_grid_writes_png(images, tiny_model, tmp_path):
    build_index(images, tiny_model, tmp_path / "idx", progress=False)
    results = search(tmp_path / "idx", tiny_model, ["The cell is red."], [images / "img_02.png"], k=3)
    out = save_grid(results, images, tmp_path / "grid.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_cli(module, argv):
    """Run one subcommand through its own register() (independent of the global COMMANDS list)."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_index_and_search(images, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from cellst.cli import index as index_cli
    from cellst.cli import search as search_cli

    out = str(tmp_path / "idx")
    assert run_cli(index_cli, ["index", str(images), "--model", str(tiny_model_dir), "--out", out]) == 0
    assert "added 6, updated 0, removed 0, unchanged 0" in capsys.readouterr().out
    (tmp_path / "q.txt").write_text("The cell is red.\n\nThe nucleus is round.\n")
    grid = tmp_path / "g.png"
    assert run_cli(search_cli, ["search", out, "-k", "2", "--queries", str(tmp_path / "q.txt"),
                                "--image", str(images / "img_04.png"), "--grid", str(grid)]) == 0
    printed = capsys.readouterr().out
    assert "'The nucleus is round.':" in printed and "1. +1.0000  img_04.png" in printed and grid.is_file()

    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(f"The cell is blue.\nimage: {images}/nope.png\n"
                                                                 f"image: {images}/img_02.png\nquit\nnever\n"))
    assert run_cli(search_cli, ["search", out, "--interactive", "-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("query> ") == 4 and "1. +1.0000  img_02.png" in captured.out
    assert "nope.png" in captured.err  # a bad path is reported and the session goes on
