"""Training-data options: mined hard negatives, image augmentation as images load, early stopping on val."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellst import finetune
from cellst.augment import AugmentOptions, augment_dataset, augment_image
from cellst.data import read_split
from cellst.errors import CellstError
from cellst.mining import mine_negatives, mined_view
from cellst.pairs import dataset_view, no_duplicates_by_path

from conftest import draw

FAST = dict(epochs=2, batch_size=4, learning_rate=1e-3, warmup_ratio=0.0)


def test_mined_negatives_are_the_hardest_captions_that_are_not_positives(tiny_model, tiny_splits):
    frame = read_split(tiny_splits["train"])
    mined = mine_negatives(tiny_model, frame, k=2)
    positives = set(zip(frame.loc[frame["label"] == 1, "image"], frame.loc[frame["label"] == 1, "caption"]))
    assert len(mined) == 2 * len(positives)
    assert not any((image, negative) in positives for image, negative in zip(mined["image"], mined["negative"]))
    # Hardest first: the image's best-scoring non-positive caption, recomputed by hand.
    image = frame["image"].iloc[0]
    from cellst.images import load_rgb

    captions = sorted(set(frame["caption"]) - {c for i, c in positives if i == image})
    scores = tiny_model.encode([load_rgb(image)], normalize_embeddings=True) @ \
        tiny_model.encode(captions, normalize_embeddings=True).T
    assert mined.loc[mined["image"] == image, "negative"].iloc[0] == captions[int(np.argmax(scores))]


def test_other_phrasings_of_a_true_value_are_never_mined(tiny_model, tiny_splits):
    frame = read_split(tiny_splits["train"])
    frame["value"] = frame["caption"].str.extract(r"is (\w+)\.$")[0]  # "The cell is red." states red
    red = frame.loc[frame["caption"] == "The cell is red.", "image"].iloc[0]
    synonym = {"row": 0, "image": red, "caption": "A red cell.", "label": 1.0, "descriptor": "colour", "value": "red"}
    frame = pd.concat([frame, pd.DataFrame([synonym])], ignore_index=True)
    mined = mine_negatives(tiny_model, frame, k=len(set(frame["caption"])))  # every caption not known true
    is_red = frame.loc[(frame["label"] == 1) & (frame["value"] == "red"), "image"]
    negatives = mined.groupby("image")["negative"].agg(set)
    assert all("A red cell." not in negatives[i] and "The cell is red." not in negatives[i] for i in set(is_red))
    assert all("A red cell." in negatives[i] for i in set(negatives.index) - set(is_red))


def test_mined_view_trains(tiny_model, tiny_model_dir, tiny_splits, tmp_path):
    view = mined_view(tiny_model, read_split(tiny_splits["train"]), 1)
    assert view.column_names == ["image", "caption", "negative"]
    assert isinstance(view[0]["image"], Image.Image)
    run = finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(tmp_path / "r"),
                   mine_negatives=2, **FAST)
    assert run["metrics"]["loss"] == "mnrl"
    with pytest.raises(CellstError, match="choose one"):
        finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(tmp_path / "x"),
                 mine_negatives=2, hard_negatives=True)


@pytest.mark.parametrize("options", [AugmentOptions(), AugmentOptions(angle=0), AugmentOptions(
    crop=0.7, color=0.3, stain=0.1)], ids=["default", "right-angles", "everything"])
def test_augmentation_changes_images_and_is_fixed_by_the_seed(options):
    image = draw("red", "square", size=32, seed=1)
    variants = [augment_image(image, np.random.default_rng(7), options) for _ in range(2)]
    assert np.array_equal(np.asarray(variants[0]), np.asarray(variants[1]))  # same seed, same image
    draws = [np.asarray(augment_image(image, np.random.default_rng(s), options)) for s in range(8)]
    assert any(d.shape != np.asarray(image).shape or not np.array_equal(d, np.asarray(image)) for d in draws)
    assert len({d.tobytes() for d in draws}) > 1  # different seeds, different variants


def test_stain_jitter_of_zero_strength_keeps_the_colours():
    from cellst.augment import _stain

    image = draw("blue", "round", size=16, seed=3)
    same = np.asarray(_stain(image, np.random.default_rng(0), 0.0)).astype(int)
    assert np.abs(same - np.asarray(image).astype(int)).max() <= 1  # optical-density round trip, to rounding


def test_augmented_dataset_is_lazy_deterministic_and_hashed_unaugmented(tiny_splits):
    plain = dataset_view(read_split(tiny_splits["train"]), "pairs")
    first, second = (augment_dataset(plain, seed=3) for _ in range(2))
    rows = [first[i]["image"] for i in range(4)]
    assert [np.asarray(im).tobytes() for im in rows] == [np.asarray(second[i]["image"]).tobytes() for i in range(4)]
    assert any(not np.array_equal(np.asarray(a), np.asarray(plain[i]["image"])) for i, a in enumerate(rows))
    # The sampler sees original pixels, so both rows of one image keep one hash and never share a batch.
    sampler = no_duplicates_by_path(first, batch_size=4, drop_last=False, valid_label_columns=["label"])
    for batch in sampler:
        images = [plain[i]["image"].tobytes() for i in batch]
        assert len(set(images)) == len(images)


def test_training_with_augmentation_runs(tiny_model_dir, tiny_splits, tmp_path, monkeypatch):
    import cellst.augment

    calls = []
    original = cellst.augment.augment_image
    monkeypatch.setattr(cellst.augment, "augment_image", lambda *a: calls.append(1) or original(*a))
    run = finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(tmp_path / "aug"),
                   augment=True, augment_crop=0.8, augment_color=0.2, augment_stain=0.05, **FAST)
    log = [json.loads(x) for x in (run["output"] / "trainer_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite([e["loss"] for e in log if "loss" in e]))
    assert len(calls) >= 2 * 32  # two epochs of the 32 training pairs, each augmented as it loaded


def test_early_stopping_stops_when_val_stops_improving(tiny_model_dir, tiny_splits, tmp_path):
    # With a learning rate of 0 nothing improves: the first evaluation is the best, the next one exhausts patience 1.
    run = finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), val=str(tiny_splits["val"]),
                   output=str(tmp_path / "es"), epochs=20, batch_size=4, learning_rate=0.0,
                   early_stopping_patience=1)
    assert len(run["metrics"]["val_history"]) == 2
    with pytest.raises(CellstError, match="give --val"):
        finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(tmp_path / "x"),
                 early_stopping_patience=1)
