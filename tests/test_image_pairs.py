"""``--pairs image-image``: pairs labelled by class, seeded, per split; training widens the same/different gap."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellst import FinetuneConfig, finetune
from cellst.cli import main
from cellst.data import Columns, load_splits
from cellst.errors import CellstError
from cellst.image_pairs import ImagePairsJob, build_pairs, image_classes
from cellst.similarity import similarity_gap
from cellst.images import load_rgb
from cellst.model import load_model

IMAGES = [f"img{i}" for i in range(12)]
CLASSES = ["a"] * 5 + ["b"] * 4 + ["c"] * 2 + ["d"]  # "d" has one image: it can only be in different-class pairs


def test_pairs_are_labelled_by_class_without_self_or_repeated_pairs():
    pairs = build_pairs(IMAGES, CLASSES, pairs_per_image=2, negative_ratio=1.0, seed=0)
    klass = dict(zip(IMAGES, CLASSES))
    same = [klass[a] == klass[b] for a, b in zip(pairs["image_a"], pairs["image_b"])]
    assert pairs["label"].tolist() == [1.0 if s else 0.0 for s in same]
    assert not (pairs["image_a"] == pairs["image_b"]).any()
    unordered = [frozenset(p) for p in zip(pairs["image_a"], pairs["image_b"])]
    assert len(set(unordered)) == len(unordered)
    positives = pairs[pairs["label"] == 1]
    assert "img11" not in set(positives["image_a"]) | set(positives["image_b"])
    # Every image with a classmate is in a same-class pair; the two "c" images can only be paired with each other.
    assert set(positives["image_a"]) | set(positives["image_b"]) == set(IMAGES[:11])
    assert (positives["image_a"].isin(["img9", "img10"]) & positives["image_b"].isin(["img9", "img10"])).sum() == 1
    assert (pairs["label"] == 0).sum() == (pairs["label"] == 1).sum()  # negative_ratio 1


def test_pairs_are_seeded():
    first = build_pairs(IMAGES, CLASSES, 2, 1.0, seed=3)
    pd.testing.assert_frame_equal(first, build_pairs(IMAGES, CLASSES, 2, 1.0, seed=3))
    assert not first.equals(build_pairs(IMAGES, CLASSES, 2, 1.0, seed=4))


@pytest.mark.parametrize("per_image,ratio", [(1, 1.0), (2, 0.5), (3, 2.0)])
def test_pair_counts_follow_the_options(per_image, ratio):
    images = [f"i{k}" for k in range(40)]
    classes = [str(k % 4) for k in range(40)]  # ten images a class, so every image finds per_image classmates
    pairs = build_pairs(images, classes, per_image, ratio, seed=0)
    counts = Counter(pairs["label"])
    drawn = Counter(pairs.loc[pairs["label"] == 1, "image_a"])
    assert max(drawn.values()) == per_image  # each image draws per_image partners; repeats are dropped
    assert counts[0.0] == round(counts[1.0] * ratio)
    started = Counter(pairs.loc[pairs["label"] == 0, "image_a"])
    assert max(started.values()) == -(-counts[0.0] // 40)  # spread over the images, not drawn from a few


def test_one_class_or_no_classmates_is_an_error():
    with pytest.raises(CellstError, match="at least two classes"):
        build_pairs(["x", "y"], ["a", "a"])
    with pytest.raises(CellstError, match="no same-class pair"):
        build_pairs(["x", "y", "z"], ["a", "b", "c"])


def test_image_classes_dedupes_rows_and_refuses_missing_or_mixed_classes():
    frame = pd.DataFrame({"image": ["p", "p", "q", "r"], "class": ["a", "a", "b", "a"], "row": [2, 3, 4, 5]})
    assert image_classes(frame, "cell_type") == (["p", "q", "r"], ["a", "b", "a"])
    with pytest.raises(CellstError, match=r"row 4.*cell_type|cell_type.*row 4"):
        image_classes(frame.assign(**{"class": ["a", "a", "", "a"]}), "cell_type")
    with pytest.raises(CellstError, match="one class"):
        image_classes(frame.assign(**{"class": ["a", "b", "b", "a"]}), "cell_type")


def test_similarity_gap_by_hand():
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    gap = similarity_gap(vectors, ["a", "a", "b", "b"])
    # same-class: (0,1) 0.6, (2,3) 0.0; different-class: (0,2) 0, (0,3) -1, (1,2) 0.8, (1,3) -0.6
    assert gap["same"] == pytest.approx(0.3)
    assert gap["different"] == pytest.approx(-0.2)
    assert gap["gap"] == pytest.approx(0.5)
    assert (gap["n_same_pairs"], gap["n_different_pairs"]) == (2, 4)


def _config(model, splits, out, **kw):
    return FinetuneConfig(model=str(model), train=str(splits["train"]), val=str(splits["val"]),
                          test=str(splits["test"]), output=str(out), pairs="image-image", loss="cosine", **kw)


def test_datasets_pair_images_inside_each_split(tiny_model_dir, tiny_splits, tmp_path):
    import datasets

    job = ImagePairsJob(_config(tiny_model_dir, tiny_splits, tmp_path / "run").validate())
    splits = load_splits({k: str(v) for k, v in tiny_splits.items()}, Columns(klass=job.class_column))
    train, val = job.datasets(splits, tmp_path / "cache")
    assert job.class_column == "class" and job.cfg.freeze == "text"
    assert isinstance(train.features["image_a"], datasets.Image) and isinstance(train.features["image_b"], datasets.Image)
    assert train.column_names == ["image_a", "image_b", "label"]
    for ds, name in ((train, "train"), (val, "val")):
        raw = ds.cast_column("image_a", datasets.Image(decode=False)).cast_column("image_b", datasets.Image(decode=False))
        paths = {r["path"] for column in ("image_a", "image_b") for r in raw[column]}
        assert paths <= set(splits[name]["image"]), f"{name} pairs use images of another split"
    assert job.evaluator is not None and job.evaluator.images == job.classes["val"][0]


def test_image_image_training_widens_the_gap(tiny_model_dir, tiny_splits, tmp_path):
    out = tmp_path / "run"
    finetune(_config(tiny_model_dir, tiny_splits, out, epochs=3, batch_size=8, learning_rate=1e-3, warmup_ratio=0.0))
    metrics = json.loads((out / "metrics.json").read_text())
    figures = metrics["image_similarity"]
    assert figures["after"]["gap"] > figures["before"]["gap"] + 0.3
    assert metrics["after"], "text-image recall is still reported for image-image runs"
    # The saved model gives the same after-figure when measured independently.
    test = pd.read_csv(tiny_splits["test"]).drop_duplicates("image_path")
    images = [load_rgb(tiny_splits["test"].parent / p) for p in test["image_path"]]
    vectors = load_model(out).encode(images, normalize_embeddings=True)
    assert similarity_gap(vectors, test["class"].tolist())["gap"] == pytest.approx(figures["after"]["gap"], abs=1e-4)
    # Image pairs never reach the text tower: frozen, its weights are the starting model's.
    before, after = load_model(tiny_model_dir), load_model(out)
    for name, value in before[0].auto_model.text_model.state_dict().items():
        assert np.array_equal(value.numpy(), after[0].auto_model.text_model.state_dict()[name].numpy()), name
    with Image.open(out / "figures" / "image_similarity.png") as picture:
        assert picture.width > 400 and picture.height > 200
    assert metrics["val_history"] and "image_similarity" in metrics["val_history"][-1]


def test_cli_contrastive_and_missing_class_column(tiny_model_dir, tiny_splits, tmp_path, capsys):
    base = ["finetune", "--model", str(tiny_model_dir), "--train", str(tiny_splits["train"]),
            "--test", str(tiny_splits["test"]), "--pairs", "image-image", "--epochs", "1", "--batch-size", "8"]
    assert main(base + ["--loss", "contrastive", "--output", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "figures" / "image_similarity.png").is_file()
    assert main(base + ["--output", str(tmp_path / "mnrl")]) == 2  # default loss mnrl does not take image pairs
    assert "--loss cosine or --loss contrastive" in capsys.readouterr().err
    no_class = tmp_path / "no_class.csv"
    pd.read_csv(tiny_splits["train"]).drop(columns="class").to_csv(no_class, index=False)
    code = main(base[:4] + [str(no_class)] + base[5:] + ["--loss", "cosine", "--output", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "class column" in err and "--class-column" in err
    assert not (tmp_path / "bad").exists()  # refused before the run folder is written
    code = main(base + ["--loss", "cosine", "--class-column", "tissue", "--output", str(tmp_path / "bad2")])
    assert code == 2 and "'tissue'" in capsys.readouterr().err
