"""The synthetic blood-smear generator: determinism, type profiles, visible features, output layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellst.errors import CellstError
from cellst.synth import CELL_TYPES, DESCRIPTORS, PROFILES, generate_images, make_demo_data, sample_attributes
from cellst.synth_draw import draw_cell

BASE = {"cell_type": "lymphocyte", "cell_size": "medium", "nuclear_shape": "round", "nucleus_position": "central",
        "nc_ratio": "moderate", "chromatin": "fine", "nucleoli": "absent", "cytoplasm_colour": "pale blue",
        "granules": "none", "vacuoles": "absent", "projections": "absent"}


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "split_summary.json"}  # the summary names its own (absolute) source


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", n_images=48, seed=3, size=48, workers=1)


def test_same_seed_gives_identical_bytes(demo, tmp_path):
    again = make_demo_data(tmp_path / "again", n_images=48, seed=3, size=48, workers=1)
    assert _files(demo) == _files(again)


def test_different_seed_gives_different_images(demo, tmp_path):
    other = make_demo_data(tmp_path / "other", n_images=48, seed=4, size=48, workers=1)
    a, b = _files(demo), _files(other)
    assert sum(a[k] != b[k] for k in a if k.startswith("images/")) == 48


def test_parallel_generation_matches_serial(tmp_path):
    serial = generate_images(tmp_path / "one", 128, 7, 32, workers=1)
    parallel = generate_images(tmp_path / "two", 128, 7, 32, workers=2)
    assert serial == parallel
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_output_layout(demo):
    table = pd.read_csv(demo / "attributes.csv")
    assert list(table.columns) == ["image_path", "cell_type", *DESCRIPTORS]
    assert len(table) == 48 and table["image_path"].map(lambda p: (demo / p).is_file()).all()
    assert not table["image_path"].str.contains("|".join(CELL_TYPES)).any()  # a path must not give the type away
    for split in ("train", "val", "test"):
        rows = pd.read_csv(demo / f"{split}_split.csv")
        assert list(rows.columns) == ["image_path", "caption", "similarity", "descriptor", "value", "cell_type"]
        assert set(rows["cell_type"]) == set(CELL_TYPES)  # 6 per type: stratification puts each type in each split
    with Image.open(demo / table["image_path"][0]) as im:
        assert im.size == (48, 48) and im.mode == "RGB"


def test_splits_pass_the_training_data_checks(demo):
    from cellst.data import Columns, load_splits

    splits = load_splits({s: demo / f"{s}_split.csv" for s in ("train", "val", "test")}, Columns(klass="cell_type"))
    assert sum(len(f) for f in splits.values()) == 48 * 12  # 11 positives (10 descriptors + type) + 1 negative


def test_every_type_appears_balanced(demo):
    counts = pd.read_csv(demo / "attributes.csv")["cell_type"].value_counts()
    assert set(counts.index) == set(CELL_TYPES) and len(CELL_TYPES) >= 6 and counts.min() == counts.max() == 6


def test_attributes_follow_the_type():
    rng = np.random.default_rng(0)
    samples = pd.DataFrame([sample_attributes(t, rng) for t in CELL_TYPES for _ in range(60)])
    by_type = samples.groupby("cell_type")
    assert set(by_type.get_group("neutrophil")["nuclear_shape"]) <= {"segmented", "band-shaped", "bilobed"}
    assert (by_type.get_group("neutrophil")["nuclear_shape"] == "segmented").mean() > 0.6
    assert set(by_type.get_group("eosinophil")["granules"]) == {"large orange-red"}
    assert set(by_type.get_group("basophil")["granules"]) == {"dark purple"}
    assert set(by_type.get_group("hairy cell")["projections"]) == {"hair-like"}
    assert (by_type.get_group("blast")["nucleoli"] == "visible").mean() > 0.6
    assert (by_type.get_group("plasma cell")["nucleus_position"] == "eccentric").mean() > 0.8
    assert (by_type.get_group("lymphocyte")["cell_size"] != "large").all()
    # Descriptors vary within a type, so captions are not a function of the type.
    assert by_type["cell_size"].nunique().max() > 1 and by_type["nuclear_shape"].nunique().gt(1).sum() >= 6


def test_every_value_is_a_known_descriptor_value():
    for cell_type, profile in PROFILES.items():
        for name, options in profile.items():
            assert set(options) <= set(DESCRIPTORS[name]), (cell_type, name)
            assert abs(sum(options.values()) - 1) < 1e-9, (cell_type, name)


def _draw(**changes):
    return draw_cell({**BASE, **changes}, np.random.default_rng(11), 96).astype(int)


def _bluish(image):  # cytoplasm and nucleus are bluer than red; red cells and the slide are not
    return int(((image[..., 2] - image[..., 0]) > 20).sum())


def test_cell_size_changes_the_drawn_area():
    small, medium, large = (_bluish(_draw(cell_size=v)) for v in ("small", "medium", "large"))
    assert small < medium < large and large > 2.2 * small


@pytest.mark.parametrize("value, colour_test", [
    ("large orange-red", lambda im: (im[..., 0] > 190) & (im[..., 1] < 150) & (im[..., 2] < im[..., 1] - 15)),
    ("dark purple", lambda im: (im[..., 0] < 90) & (im[..., 1] < 60) & (im[..., 2] < 120)),
])
def test_granules_are_drawn_in_their_colour(value, colour_test):
    assert colour_test(_draw(granules=value)).sum() > 60
    assert colour_test(_draw(granules="none")).sum() < 5


def test_segmented_nucleus_covers_less_than_a_round_one():
    def dark(im):
        return int(((im[..., 0] < 140) & (im[..., 1] < 100)).sum())
    assert dark(_draw(nuclear_shape="segmented", chromatin="dense")) < 0.8 * dark(_draw(chromatin="dense"))


def test_vacuoles_and_projections_change_the_picture():
    assert np.abs(_draw(vacuoles="present") - _draw()).mean() > 0.5
    assert _bluish(_draw(projections="hair-like")) > _bluish(_draw()) + 40


def test_bad_arguments_and_non_empty_output(tmp_path):
    with pytest.raises(CellstError, match="n_images"):
        make_demo_data(tmp_path / "x", n_images=0)
    with pytest.raises(CellstError, match="size"):
        make_demo_data(tmp_path / "x", n_images=4, size=8)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(CellstError, match="not empty"):
        make_demo_data(tmp_path / "full", n_images=8, size=32)
    make_demo_data(tmp_path / "full", n_images=8, size=32, overwrite=True)
    assert (tmp_path / "full" / "train_split.csv").is_file() and (tmp_path / "full" / "keep.txt").is_file()


def test_contact_sheet(tmp_path):
    from cellst.synth import contact_sheet

    path = contact_sheet(tmp_path / "sheet.png", per_type=2, size=32)
    with Image.open(path) as im:
        assert im.size == (90 + 2 * 34, len(CELL_TYPES) * 34)
