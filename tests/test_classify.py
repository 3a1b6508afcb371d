"""Classification (cellst.classify): zero-shot, probe and fused, with metrics checked by hand and against sklearn.

A random tiny CLIP cannot classify, so most tests use ColourEncoder, whose embeddings make the classes separable by
construction and whose zero-shot mistakes can be worked out by hand.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from conftest import COLOURS, draw, make_split
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from cellst.classify import class_embeddings, classify
from cellst.classify_report import method_report
from cellst.errors import CellstError


class ColourEncoder:
    """Embeds an image as the mean colour of its centre (the drawn cell) and a text as the colour it names."""

    def encode(self, inputs, normalize_embeddings=False, **kwargs):
        vectors = np.array([self._image(x) if isinstance(x, Image.Image) else self._text(x) for x in inputs], float)
        if normalize_embeddings:
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)

    @staticmethod
    def _image(image):
        return np.asarray(image, float)[6:10, 6:10].reshape(-1, 3).mean(axis=0)

    @staticmethod
    def _text(text):
        return next((rgb for name, rgb in COLOURS.items() if name in text.lower()), (128, 128, 128))


def class_folders(root, counts):
    for colour, n in counts.items():
        (root / colour).mkdir(parents=True)
        for i in range(n):
            draw(colour, ["round", "square"][i % 2], seed=100 * len(colour) + i).save(root / colour / f"c{i}.png")
    return root


@pytest.fixture
def cells(tmp_path):
    return class_folders(tmp_path / "cells", {"red": 4, "green": 4, "blue": 4})


def test_three_methods_with_a_hand_worked_zero_shot_confusion(cells, tmp_path):
    # "blue" is described as yellow, and a blue cell is closer to green than to yellow or red: all 4 go to green.
    (tmp_path / "d.json").write_text(json.dumps({"red": ["a red cell", "red"], "green": "green", "blue": "yellow"}))
    result = classify(cells, ColourEncoder(), descriptions=tmp_path / "d.json", folds=4, out_dir=tmp_path / "out",
                      progress=False)
    assert result["classes"] == ["blue", "green", "red"] and result["folds"] == 4
    zero = result["methods"]["zero_shot"]
    assert zero["confusion"] == [[0, 4, 0], [0, 4, 0], [0, 0, 4]]
    assert zero["accuracy"] == pytest.approx(8 / 12)
    assert zero["precision_macro"] == pytest.approx((0 + 4 / 8 + 1) / 3)  # blue is never predicted: precision 0
    assert zero["recall_macro"] == pytest.approx((0 + 1 + 1) / 3)
    assert zero["f1_macro"] == pytest.approx((0 + 2 / 3 + 1) / 3)
    assert zero["per_class"]["green"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 4}
    assert result["methods"]["probe"]["accuracy"] == 1.0 and result["methods"]["fused"]["accuracy"] == 1.0
    assert len(result["methods"]["probe"]["fold_accuracy"]["folds"]) == 4


def test_reported_metrics_equal_sklearn_on_the_written_predictions(cells, tmp_path):
    (tmp_path / "d.yaml").write_text("red: red\ngreen: green\nblue: [yellow]\n")
    out = tmp_path / "out"
    classify(cells, ColourEncoder(), descriptions=tmp_path / "d.yaml", folds=3, out_dir=out, progress=False)
    result = json.loads((out / "classification.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    classes = result["classes"]
    for method, report in result["methods"].items():
        y, p = predictions["class"], predictions[method]
        macro = precision_recall_fscore_support(y, p, labels=classes, average="macro", zero_division=0)
        assert report["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert [report["precision_macro"], report["recall_macro"], report["f1_macro"]] == pytest.approx(macro[:3])
        matrix = confusion_matrix(y, p, labels=classes)
        assert pd.read_csv(out / f"confusion_{method}.csv", index_col=0).to_numpy().tolist() == matrix.tolist()
        assert (out / f"confusion_{method}.png").read_bytes()[:4] == b"\x89PNG"


def test_method_report_on_a_small_hand_worked_case():
    report = method_report(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"], ["a", "b", "c"])
    assert report["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_class"]["a"]["precision"] == 0.5 and report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["recall_macro"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_several_descriptions_average_to_the_class_direction():
    encoder = ColourEncoder()
    [vector] = class_embeddings(encoder, {"x": ["red", "yellow"]}, ["x"])
    red, yellow = encoder.encode(["red", "yellow"], normalize_embeddings=True)
    np.testing.assert_allclose(vector, (red + yellow) / np.linalg.norm(red + yellow), atol=1e-6)


def test_default_descriptions_and_no_fuse(cells):
    result = classify(cells, ColourEncoder(), folds=2, fuse=False, progress=False)
    assert set(result["methods"]) == {"zero_shot", "probe"}
    assert result["descriptions"]["red"] == ["a microscopy image of a red cell."]
    assert result["methods"]["zero_shot"]["accuracy"] == 1.0


def test_small_class_reduces_folds_with_a_warning(tmp_path):
    data = class_folders(tmp_path / "cells", {"red": 5, "green": 2, "blue": 5})
    with pytest.warns(UserWarning, match="'green' has only 2 images.*2-fold"):
        result = classify(data, ColourEncoder(), progress=False)
    assert result["folds"] == 2 and result["methods"]["probe"]["accuracy"] == 1.0


def test_csv_input_counts_each_image_once(tmp_path):
    csv = make_split(tmp_path, "train", 16, seed=1)  # three caption rows per image
    result = classify(csv, ColourEncoder(), folds=4, progress=False)
    assert result["n_images"] == 16 and result["class_counts"] == {c: 4 for c in sorted(COLOURS)}
    pd.read_csv(csv).rename(columns={"image_path": "file", "class": "label"}).to_csv(tmp_path / "r.csv", index=False)
    renamed = classify(tmp_path / "r.csv", ColourEncoder(), folds=4, class_column="label", image_column="file",
                       progress=False)
    assert renamed["methods"]["probe"] == result["methods"]["probe"]


def test_bad_inputs_name_the_file(tmp_path, cells):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CellstError, match="No labelled images in .*empty"):
        classify(tmp_path / "empty", ColourEncoder())
    pd.DataFrame({"image_path": ["a.png"], "kind": ["red"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(CellstError, match=r"t\.csv has no column 'class'.*--class-column"):
        classify(tmp_path / "t.csv", ColourEncoder())
    (cells / "red" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(CellstError, match=r"could not be read: .*red/broken\.png"):
        classify(cells, ColourEncoder(), folds=2, progress=False)
    (cells / "red" / "broken.png").unlink()
    with pytest.raises(CellstError, match="no description for class.*blue"):
        classify(cells, ColourEncoder(), descriptions={"red": "red", "green": "green"})
    with pytest.raises(CellstError, match="at least 2 classes"):
        classify(class_folders(tmp_path / "one", {"red": 3}), ColourEncoder())


def test_real_tiny_clip_end_to_end(cells, tiny_model):
    result = classify(cells, tiny_model, folds=2, progress=False)  # accuracy is chance; the pipeline must run
    assert 0.0 <= result["methods"]["fused"]["accuracy"] <= 1.0 and result["n_images"] == 12


def test_cli_prints_the_methods_side_by_side(cells, tiny_model_dir, tmp_path, capsys):
    from cellst.cli import classify as classify_cli

    parser = argparse.ArgumentParser()
    classify_cli.register(parser.add_subparsers())
    args = parser.parse_args(["classify", str(cells), "--model", str(tiny_model_dir), "--folds", "2",
                              "--out", str(tmp_path / "out")])
    assert args.run(args) == 0
    table = capsys.readouterr().out
    assert all(word in table for word in ("zero_shot", "probe", "fused", "macro F1", "majority-class accuracy"))
    assert (tmp_path / "out" / "confusion_fused.png").is_file()
