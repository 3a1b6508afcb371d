"""Bad input through `cellst finetune`, one case per test: exit code 2 and a message naming the file, row and column
with the fix, or, where the input is harmless, a warning and the documented behaviour. No case gives a traceback.

tests/test_data.py holds the cases found by reading the CSV (columns, empty or non-UTF-8 files, labels, captions,
leakage, images missing together); this file holds the rest: single bad images, images that convert, captions longer
than the model reads, a model that is not a CLIP, a batch larger than the data, paths outside the image root.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from cellst.cli import main

from test_data import fails, finetune_argv, rewrite

QUICK = ["--epochs", "1", "--batch-size", "4", "--learning-rate", "1e-3"]


def trains(argv, capsys):
    """Run a finetune that must succeed; return stderr and the warnings (which the CLI prints as `cellst: warning:`;
    under pytest they are recorded instead)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    return err + "\n".join(str(w.message) for w in caught)


def train_only(tiny_splits, tmp_path, model, *extra):
    """A fast finetune on the train split alone: the harmless cases need training to run, not the figures."""
    return ["finetune", "--model", str(model), "--train", str(tiny_splits["train"]), "--output",
            str(tmp_path / "run"), *QUICK, *extra]


def test_missing_column_names_the_columns_found(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["train"], lambda f: f.drop(columns="caption"))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "train_split.csv", "no 'caption' column",
          "found: image_path, similarity", "--caption-column")


def test_unquoted_comma_names_the_line(tiny_splits, tmp_path, capsys):
    with open(tiny_splits["val"], "a") as fh:
        fh.write("images/img_100.png,The cell is red, and round.,1,colour,red\n")
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "val_split.csv", "not a readable CSV", "line 26",
          "Quote captions")


def test_empty_image_path(tiny_splits, tmp_path, capsys):
    rewrite(tiny_splits["train"], lambda f: f.assign(image_path=f["image_path"].where(f.index != 4)))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "Empty image path", "train_split.csv, row 6",
          "column 'image_path'")


def test_missing_image(tiny_splits, tmp_path, capsys):
    (tmp_path / "images" / "img_105.png").unlink()
    err = fails(finetune_argv(tiny_splits, tmp_path), capsys, "1 of 32 images", "img_105.png: file not found",
                "Fix the paths")
    assert "val_split.csv, row 17, column 'image_path'" in err  # image 105 is val's sixth image: rows 17-19


def test_unreadable_image(tiny_splits, tmp_path, capsys):
    (tmp_path / "images" / "img_007.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a header, then nothing
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "img_007.png: does not decode as an image",
          "train_split.csv, row 23, column 'image_path'")


def test_zero_byte_image(tiny_splits, tmp_path, capsys):
    (tmp_path / "images" / "img_203.png").write_bytes(b"")
    fails(finetune_argv(tiny_splits, tmp_path), capsys, "img_203.png: empty file (0 bytes)",
          "test_split.csv, row 11, column 'image_path'")


def test_sixteen_bit_and_transparent_images_are_converted_with_a_warning(tiny_splits, tiny_model_dir, tmp_path,
                                                                          capsys):
    deep = (np.arange(16 * 16).reshape(16, 16) * 40).astype(np.uint16)  # 0..10200: far past 8 bits
    Image.fromarray(deep).save(tmp_path / "images" / "deep.tif")
    Image.new("RGBA", (16, 16), (200, 30, 30, 120)).save(tmp_path / "images" / "clear.png")
    rewrite(tiny_splits["train"], lambda f: f.replace({"images/img_000.png": "images/deep.tif",
                                                       "images/img_001.png": "images/clear.png"}))
    err = trains(train_only(tiny_splits, tmp_path, tiny_model_dir), capsys)
    assert "1 16-bit, 32-bit or float images (mode I;16)" in err and "darkest to its brightest" in err
    assert "deep.tif (" in err and "train_split.csv, row 2, column 'image_path'" in err
    assert "1 images with transparency (mode RGBA)" in err and "become white" in err
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_image_of_a_few_pixels_trains_with_a_warning(tiny_splits, tiny_model_dir, tmp_path, capsys):
    Image.new("RGB", (2, 3), (200, 30, 30)).save(tmp_path / "images" / "img_004.png")
    err = trains(train_only(tiny_splits, tmp_path, tiny_model_dir), capsys)
    assert "1 images are smaller than 8 pixels on a side" in err and "(2x3 px; " in err
    assert "train_split.csv, row 14, column 'image_path'" in err and "remove those rows" in err


def test_captions_longer_than_the_context_are_truncated_with_a_warning(tiny_splits, tiny_model_dir, tmp_path,
                                                                       capsys):
    long = "The cell is red. " * 30  # about 150 tokens; the micro model reads 64 (a hub CLIP: 77)
    rewrite(tiny_splits["train"], lambda f: f.assign(caption=f["caption"].where(f.index % 3 != 1, long.strip())))
    err = trains(train_only(tiny_splits, tmp_path, tiny_model_dir), capsys)
    assert "16 captions in the train split are longer than the model's 64-token context" in err
    assert "column 'caption', rows 3, 6, 9" in err and "truncated to their first 64 tokens" in err
    # Training read them (truncated) and the model still embeds them.
    log = [json.loads(x) for x in (tmp_path / "run" / "trainer_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite([e["loss"] for e in log if "loss" in e]))


@pytest.fixture(scope="module")
def text_only_model(tmp_path_factory):
    """A tiny BERT folder: a real sentence-transformers model that embeds text but not images."""
    from transformers import BertConfig, BertModel, BertTokenizer

    out = tmp_path_factory.mktemp("models") / "bert"
    vocab = out.parent / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cell", "is", "red", "."]))
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(out)
    BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(out)
    return out


def test_model_that_embeds_text_only(tiny_splits, text_only_model, tmp_path, capsys):
    fails(train_only(tiny_splits, tmp_path, text_only_model), capsys, f"Model '{text_only_model}' cannot embed image",
          "supports: text", "cellst init-model")


def test_model_folder_without_a_model(tiny_splits, tmp_path, capsys):
    fails(train_only(tiny_splits, tmp_path, tmp_path / "images"), capsys, "Cannot load model",
          "the folder does not hold a loadable model")


def test_batch_size_larger_than_the_data(tiny_splits, tmp_path, capsys):
    # finetune_argv names no real model: the batch is refused from the data alone, before any model is loaded.
    fails(finetune_argv(tiny_splits, tmp_path, "--batch-size", "64"), capsys, "--batch-size 64 is larger than the 32 "
          "training examples", "Use --batch-size 16 or less")


@pytest.mark.parametrize("path", ["../outside.png", "/etc/hostname", "images/../../outside.png"])
def test_image_paths_outside_the_root_are_refused_by_default(tiny_splits, tmp_path, capsys, path):
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "images" / "img_000.png").read_bytes())
    rewrite(tiny_splits["train"], lambda f: f.assign(image_path=f["image_path"].where(f.index != 2, path)))
    fails(finetune_argv(tiny_splits, tmp_path), capsys, f"Image path '{path}'", "train_split.csv, row 4, column "
          "'image_path'", "leaves the image root", "--allow-outside-root")


def test_outside_root_allowed_when_asked(tiny_splits, tiny_model_dir, tmp_path, capsys):
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "images" / "img_000.png").read_bytes())
    rewrite(tiny_splits["train"], lambda f: f.replace({"images/img_000.png": "../outside.png"}))
    trains(train_only(tiny_splits, tmp_path, tiny_model_dir, "--allow-outside-root"), capsys)
    saved = (tmp_path / "run" / "cellst_config.yaml").read_text()
    assert "allow_outside_root: true" in saved  # and the report, which rereads the splits, honours it
    assert (tmp_path / "run" / "report.md").exists()


def test_inside_root_through_a_link_is_not_outside(tiny_splits, tmp_path):
    from cellst.data import read_split

    (tmp_path / "linked").symlink_to(tmp_path / "images")  # a data folder linked in by the user is theirs to trust
    rewrite(tiny_splits["train"], lambda f: f.assign(image_path=f["image_path"].str.replace("images/", "linked/")))
    assert len(read_split(tiny_splits["train"])) == 48


def test_contradictory_trainer_arguments_fail_before_anything_is_written(tiny_splits, tmp_path, capsys):
    # Saving by steps while evaluating each epoch cannot pick the best checkpoint: the trainer's own check, run first.
    fails(finetune_argv(tiny_splits, tmp_path, "--save_strategy", "steps"), capsys, "Invalid training arguments",
          "save and eval strategy")
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_outside_paths_unless_allowed(tiny_splits, tiny_model_dir, tmp_path, capsys):
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "images" / "img_200.png").read_bytes())
    rewrite(tiny_splits["test"], lambda f: f.replace({"images/img_200.png": "../outside.png"}))
    argv = ["evaluate", "--model", str(tiny_model_dir), "--split", str(tiny_splits["test"])]
    fails(argv, capsys, "test_split.csv, row 2, column 'image_path'", "leaves the image root")
    assert main(argv + ["--allow-outside-root"]) == 0
