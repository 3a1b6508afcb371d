"""Datasets larger than memory: training data holds image paths and decodes a row when it is read; evaluation decodes
one chunk of images at a time. So memory follows the batch, not the number of images (benchmarks/memory.py measures
the peak with 1x and 10x the images)."""

from __future__ import annotations

import weakref

import datasets
import numpy as np
import pytest

import cellst.evaluation
from cellst.data import read_split
from cellst.evaluation import encode_split
from cellst.pairs import VIEWS, dataset_view

from conftest import draw, make_split


@pytest.mark.parametrize("view", VIEWS)
def test_training_rows_hold_paths_and_decode_when_read(view, tmp_path):
    frame = read_split(make_split(tmp_path, "train", 8, seed=1))
    ds = dataset_view(frame, view)
    stored = ds.cast_column("image", datasets.Image(decode=False))["image"]
    assert all(cell["bytes"] is None and cell["path"] for cell in stored)  # no pixels in the Arrow table

    # Replace an image on disk after the dataset was built: reading the row shows the new pixels, so nothing was
    # decoded (or cached) up front.
    replacement = draw("green", "square", size=16, seed=99)
    replacement.save(stored[0]["path"])
    assert np.array_equal(np.asarray(ds[0]["image"]), np.asarray(replacement))


def test_table_size_does_not_depend_on_the_images(tmp_path):
    small = dataset_view(read_split(make_split(tmp_path / "a", "train", 8, seed=1)), "pairs")
    folder = tmp_path / "b"
    big_split = make_split(folder, "train", 8, seed=1)
    for png in (folder / "images").glob("*.png"):  # the same files, 32 times the side: 1,000 times the pixels
        draw("red", "round", size=512, seed=1).save(png)
    big = dataset_view(read_split(big_split), "pairs")
    assert big.data.nbytes < 1.2 * small.data.nbytes  # paths of the same length; 8 x 512^2 x 3 bytes decoded is 6 MB


def test_evaluation_decodes_one_chunk_at_a_time(tiny_model, tmp_path, monkeypatch):
    frame = read_split(make_split(tmp_path, "test", 80, seed=3))
    decoded, held, alive, most_alive = [], [], [], [0]
    load, encode = cellst.evaluation.load_rgb, cellst.evaluation.encode_images

    def counting_load(path):
        decoded.append(path)
        image = load(path)
        alive.append(weakref.ref(image))
        most_alive[0] = max(most_alive[0], sum(ref() is not None for ref in alive))
        return image

    def counting_encode(model, pictures, *args):
        held.append(len(decoded))  # images decoded since the previous chunk was encoded
        decoded.clear()
        return encode(model, pictures, *args)

    monkeypatch.setattr(cellst.evaluation, "load_rgb", counting_load)
    monkeypatch.setattr(cellst.evaluation, "encode_images", counting_encode)
    images, _ = encode_split(tiny_model, frame, batch_size=4)
    chunk = 64  # encode_split's chunk for a batch size of 4: max(4 * batch_size, 64)
    assert held == [chunk, 80 - chunk] and len(images) == 80
    assert most_alive[0] <= chunk  # the first chunk's pixels are freed before the second chunk decodes
    monkeypatch.undo()
    unchunked = tiny_model.encode([load(p) for p in images], normalize_embeddings=True)
    np.testing.assert_allclose(np.stack(list(images.values())), unchunked, atol=1e-5)
