"""Bad input fails before any training: exit code 2, a message naming the file, row and column, no traceback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellst.cli import main
from cellst.data import Columns, load_splits, read_split
from cellst.errors import CellstError
from cellst.images import load_rgb
from cellst.pairs import dataset_view, rgb_source


def finetune_argv(splits, tmp_path, *extra):
    return ["finetune", "--model", str(tmp_path / "no-model-needed"), "--train", str(splits["train"]),
            "--val", str(splits["val"]), "--test", str(splits["test"]), "--output", str(tmp_path / "run"), *extra]


def rewrite(path, fn):
    frame = pd.read_csv(path)
    frame = fn(frame)
    frame.to_csv(path, index=False)


def fails(argv, capsys, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_misspelt_column_suggests_the_fix(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["train"], lambda f: f.rename(columns={"similarity": "similarty"}))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "train_split.csv", "'similarity'", "similarty")


def test_empty_csv(tiny_splits, tmp_path, capsys):
    tiny_splits["val"].write_text("")
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "val_split.csv", "empty")


def test_header_only_csv(tiny_splits, tmp_path, capsys):
    tiny_splits["val"].write_text("image_path,caption,similarity\n")
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "val_split.csv", "no data rows")


def test_not_utf8(tiny_splits, tmp_path, capsys):
    text = tiny_splits["test"].read_text().replace("The cell is red.", "The cell is rouge \u00e9l\u00e9gant.")
    tiny_splits["test"].write_bytes(text.encode("latin-1"))
    # img_200 is red, so its first row (line 2) holds the first non-UTF-8 byte, in the caption.
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "test_split.csv", "not UTF-8", "row 2, column 'caption'",
          "rouge \u00e9l\u00e9gant", "iconv")


def test_missing_and_broken_images_are_reported_together(tiny_splits, tmp_path, capsys):
    (tmp_path / "images" / "img_001.png").unlink()
    (tmp_path / "images" / "img_002.png").write_bytes(b"not a png")
    (tmp_path / "images" / "img_003.png").write_bytes(b"")
    err = fails(finetune_argv(tiny_splits, tmp_path), capsys, "3 of", "img_001.png", "file not found",
                "img_002.png", "does not decode", "img_003.png", "0 bytes", "row")
    assert "train_split.csv, row 5" in err  # img_001 is first used on line 5 of the train CSV


def test_label_outside_0_1(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["train"], lambda f: f.assign(similarity=f["similarity"].replace({0: 2})))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "train_split.csv", "'similarity'", "0 or 1", "row 4")


def test_float_labels_allowed_for_cosine_only(tiny_splits):
    rewrite(tiny_splits["train"], lambda f: f.assign(similarity=f["similarity"].replace({0: 0.3})))
    with pytest.raises(CellstError):
        read_split(tiny_splits["train"])
    assert read_split(tiny_splits["train"], float_labels=True)["label"].min() == pytest.approx(0.3)


def test_nan_captions(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["train"], lambda f: f.assign(caption=f["caption"].where(f.index != 2)))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "train_split.csv", "'caption'", "rows 4")


def leak(frame):
    return frame.assign(image_path=frame["image_path"].replace({"images/img_200.png": "images/img_000.png"}))


def test_image_in_two_splits(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["test"], leak)
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "both the train and the test split", "--allow-leakage")


def test_leakage_allowed_when_asked(tiny_splits):
    rewrite(tiny_splits["test"], leak)
    splits = load_splits(tiny_splits, allow_leakage=True)
    assert set(splits) == {"train", "val", "test"}


def test_path_outside_image_root_refused_unless_allowed(tiny_splits, tmp_path):
    rewrite(tiny_splits["train"], lambda f: f.assign(image_path="../escape.png"))
    with pytest.raises(CellstError, match="leaves the image root"):
        read_split(tiny_splits["train"], allow_outside_root=False)


def test_duplicate_rows_warn_and_conflicting_labels_fail(tiny_splits):
    rewrite(tiny_splits["train"], lambda f: pd.concat([f, f.iloc[[0]]]))
    with pytest.warns(UserWarning, match="duplicate rows"):
        read_split(tiny_splits["train"])
    rewrite(tiny_splits["train"], lambda f: pd.concat([f, f.iloc[[0]].assign(similarity=0)]))
    with pytest.raises(CellstError, match="labelled both 1 and 0"), pytest.warns(UserWarning):
        read_split(tiny_splits["train"])


def test_empty_descriptor_warns(tiny_splits):
    rewrite(tiny_splits["train"], lambda f: f.assign(descriptor=f["descriptor"].where(f.index != 0)))
    with pytest.warns(UserWarning, match="empty 'descriptor'"):
        frame = read_split(tiny_splits["train"])
    assert (frame["descriptor"] == "").sum() == 1


def test_custom_column_names_and_image_root(tmp_path, tiny_splits):
    frame = pd.read_csv(tiny_splits["train"]).rename(columns={"image_path": "file", "similarity": "match"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    frame.to_csv(elsewhere / "s.csv", index=False)
    out = read_split(elsewhere / "s.csv", Columns(image="file", label="match"), image_root=tmp_path)
    assert out["image"].iloc[0] == str((tmp_path / "images" / "img_000.png").resolve())


def test_microscopy_formats_become_rgb(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 3).astype(np.uint16)  # 0..12285: far past 8 bits
    Image.fromarray(ramp).save(tmp_path / "deep.tif")
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("L", (8, 8), 77).save(tmp_path / "grey.png")
    deep = load_rgb(tmp_path / "deep.tif")
    assert deep.mode == "RGB" and np.asarray(deep).max() == 255 and np.asarray(deep).min() == 0
    assert np.asarray(deep)[32].std() > 0  # rescaled, not clipped to a white block
    assert load_rgb(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)  # transparent -> white slide
    assert load_rgb(tmp_path / "grey.png").getpixel((0, 0)) == (77, 77, 77)
    # Training sees the same pixels as evaluation: unusual modes go through an RGB copy.
    converted = rgb_source(str(tmp_path / "deep.tif"), tmp_path / "cache")
    assert converted != str(tmp_path / "deep.tif")
    assert np.array_equal(np.asarray(Image.open(converted)), np.asarray(deep))
    assert rgb_source(str(tmp_path / "grey.png"), tmp_path / "cache") == str(tmp_path / "grey.png")


def test_image_column_is_a_real_image_feature(tiny_splits):
    import datasets

    frame = read_split(tiny_splits["train"])
    for view, columns in [("pairs", ["image", "caption"]), ("triplets", ["image", "caption", "negative"]),
                          ("labelled", ["image", "caption", "label"])]:
        ds = dataset_view(frame, view)
        assert ds.column_names == columns
        assert isinstance(ds.features["image"], datasets.Image)
        assert isinstance(ds[0]["image"], Image.Image)
    assert len(dataset_view(frame, "pairs")) == int((frame["label"] == 1).sum())
    triplets = dataset_view(frame, "triplets")
    negatives = set(frame.loc[frame["label"] == 0, "caption"])
    assert set(triplets["negative"]) <= negatives


def test_no_positive_rows(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["train"], lambda f: f.assign(similarity=0))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "no positive rows")
