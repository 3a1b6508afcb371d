"""cellst's image encoding (processor-exact fast preprocessing on resize threads) equals model.encode."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cellst.fast_images import batch_preprocessor
from cellst.model import encode_images

from conftest import COLOURS, SHAPES, draw


def images_of_many_shapes() -> list[Image.Image]:
    square = [draw(list(COLOURS)[i % 4], SHAPES[i % 2], size=20 + i % 7, seed=i) for i in range(15)]
    odd = [draw("red", "round", size=48, seed=i).resize(size) for i, size in enumerate([(40, 24), (24, 41), (33, 32)])]
    return square + odd + [draw("blue", "square", size=64, seed=9).convert("L")]  # greyscale: the processor's path


def test_fast_preprocessing_gives_the_processors_pixels(tiny_model):
    images = images_of_many_shapes()
    fast = batch_preprocessor(tiny_model, images[0])
    assert fast is not tiny_model.preprocess  # the micro CLIP's PIL processor is one the fast path knows
    for batch in (images[:15], images[15:18], images[18:]):
        ours, theirs = fast(batch), tiny_model.preprocess(batch)
        assert ours.keys() == theirs.keys()
        np.testing.assert_array_equal(np.asarray(ours["pixel_values"]), np.asarray(theirs["pixel_values"]))


def test_encode_images_equals_model_encode(tiny_model):
    images = images_of_many_shapes()
    ours = encode_images(tiny_model, images, batch_size=4)  # five batches, the last one short
    theirs = tiny_model.encode(images, batch_size=4, normalize_embeddings=True)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(encode_images(tiny_model, images[:3], batch_size=4), theirs[:3], atol=1e-5)


def test_training_collator_preprocessing_matches_the_model(tiny_model):
    import pickle

    from cellst.fast_images import CollatorPreprocess

    collate = CollatorPreprocess(tiny_model)
    images, texts = images_of_many_shapes()[:18], ["The cell is red.", "The nucleus is round."]
    ours, theirs = collate(images, prompt=None, task=None), tiny_model.preprocess(images)
    np.testing.assert_array_equal(np.asarray(ours["pixel_values"]), np.asarray(theirs["pixel_values"]))
    assert collate(texts, prompt=None, task=None).keys() == tiny_model.preprocess(texts).keys()
    assert pickle.loads(pickle.dumps(collate))(images[:2])["pixel_values"].shape[0] == 2  # data-loader workers
