"""prepare: attribute table / captions.json / class folders -> thesis-format splits, split by image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellst.errors import CellstError
from cellst.prepare import from_captions_json, from_class_folders, prepare

TEMPLATES = {"size": ["The cell is {value}.", "A {value} cell."], "shape": ["The nucleus is {value}."],
             "colour": ["The cytoplasm is {value}.", "Cytoplasm colour: {value}."]}
VALUES = {"size": ["small", "medium", "large"], "shape": ["round", "lobed"], "colour": ["blue", "pink", ""]}


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


def _table(folder, n=30, classes=("A", "B", "C")):
    """n images in folder/images and an attribute CSV; every 5th image has no colour annotated."""
    rows = []
    for i in range(n):
        _png(folder / "images" / f"im{i:02d}.png", i)
        rows.append({"image_path": f"images/im{i:02d}.png", "kind": classes[i % len(classes)],
                     "size": VALUES["size"][(i // 2) % 3], "shape": VALUES["shape"][(i // 3) % 2],
                     "colour": "" if i % 5 == 0 else VALUES["colour"][(i // 4) % 2]})
    path = folder / "attributes.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _read(paths):
    return {name: pd.read_csv(path, keep_default_na=False) for name, path in paths.items()}


def _value_of(caption, descriptor):
    """The value a caption was rendered with (the test templates make it unique)."""
    values = [v for t in TEMPLATES[descriptor] for v in VALUES[descriptor] if v and t.replace("{value}", v) == caption]
    assert len(values) == 1, caption
    return values[0]


@pytest.fixture
def prepared(tmp_path):
    attributes = _table(tmp_path / "data")
    paths = prepare(attributes, TEMPLATES, tmp_path / "out" / "splits", class_column="kind", seed=1)
    return attributes, tmp_path / "out" / "splits", _read(paths)


def test_columns_and_relative_paths(prepared):
    _, out, splits = prepared
    for table in splits.values():
        assert list(table.columns) == ["image_path", "caption", "similarity", "descriptor", "value", "kind"]
        assert table["image_path"].str.startswith("../../data/images/").all()
        assert table["image_path"].map(lambda p: (out / p).is_file()).all()


def test_no_image_in_two_splits(prepared):
    _, _, splits = prepared
    images = {name: set(t["image_path"]) for name, t in splits.items()}
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    assert sum(map(len, images.values())) == 30
    assert [len(images[s]) for s in ("train", "val", "test")] == [24, 3, 3]


def test_stratified_by_class(prepared):
    _, _, splits = prepared
    for table in splits.values():
        per_class = table.drop_duplicates("image_path")["kind"].value_counts()
        assert set(per_class.index) == {"A", "B", "C"} and per_class.max() - per_class.min() <= 1


def test_positives_match_the_annotated_descriptors(prepared):
    attributes, _, splits = prepared
    table = pd.read_csv(attributes, keep_default_na=False).set_index("image_path")
    rows = pd.concat(splits.values())
    for path, group in rows.groupby("image_path"):
        own = table.loc[path.removeprefix("../../data/")]
        positives = group[group["similarity"] == 1]
        annotated = {d for d in VALUES if own[d]}
        assert set(positives["descriptor"]) == annotated and len(positives) == len(annotated)
        for caption, descriptor, value in zip(positives["caption"], positives["descriptor"], positives["value"]):
            assert _value_of(caption, descriptor) == own[descriptor] == value


def test_each_negative_swaps_exactly_one_descriptor(prepared):
    attributes, _, splits = prepared
    table = pd.read_csv(attributes, keep_default_na=False).set_index("image_path")
    rows = pd.concat(splits.values())
    negatives = rows[rows["similarity"] == 0]
    assert len(negatives) == 30  # negatives_per_image=1
    for path, caption, descriptor, value in zip(negatives["image_path"], negatives["caption"], negatives["descriptor"],
                                                negatives["value"]):
        own = dict(table.loc[path.removeprefix("../../data/")])
        swapped = {**own, descriptor: _value_of(caption, descriptor)}
        assert value == swapped[descriptor]  # the value column states the wrong value the negative claims
        assert own[descriptor] and sum(own[d] != swapped[d] for d in VALUES) == 1


def test_more_negatives_are_distinct_and_capped(tmp_path):
    attributes = _table(tmp_path / "data", n=9)
    paths = prepare(attributes, TEMPLATES, tmp_path / "out", class_column="kind", negatives_per_image=10)
    rows = pd.concat(_read(paths).values())
    negatives = rows[rows["similarity"] == 0]
    assert not negatives.duplicated(["image_path", "caption"]).any()
    # At most (3 - 1) + (2 - 1) + (2 - 1) wrong values exist per fully annotated image.
    assert negatives.groupby("image_path").size().max() == 4


def test_negative_never_reads_like_a_true_caption(tmp_path):
    # Both descriptors share a template and the value "y", so swapping a -> y would say something true of b.
    for i in range(12):
        _png(tmp_path / f"{i}.png")
    rows = [{"image_path": f"{i}.png", "a": "xy"[i % 2], "b": "yz"[i // 2 % 2]} for i in range(12)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = pd.concat(_read(prepare(tmp_path / "t.csv", {"a": ["Value {value}."], "b": ["Value {value}."]},
                                  tmp_path / "out", negatives_per_image=3)).values())
    assert (out.groupby(["image_path", "caption"])["similarity"].nunique() == 1).all()


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    attributes = _table(tmp_path / "data")
    a, b, c = (_read(prepare(attributes, TEMPLATES, tmp_path / name, seed=seed))
               for name, seed in (("a", 5), ("b", 5), ("c", 6)))
    assert all(a[s].equals(b[s]) for s in a)
    assert set(a["test"]["image_path"]) != set(c["test"]["image_path"])


@pytest.mark.parametrize("n, ratios, counts", [
    (10, (0.8, 0.1, 0.1), [8, 1, 1]), (3, (0.8, 0.1, 0.1), [1, 1, 1]), (2, (0.8, 0.1, 0.1), [1, 1, 0]),
    (1, (0.8, 0.1, 0.1), [1, 0, 0]), (7, (0.5, 0.5, 0.0), [4, 3, 0]), (5, (0.0, 0.0, 1.0), [0, 0, 5]),
])
def test_split_counts(n, ratios, counts):
    from cellst.prepare_split import split_counts

    assert split_counts(n, ratios) == counts


def test_class_column_is_captioned_when_it_has_templates(tmp_path):
    attributes = _table(tmp_path / "data", n=9)
    paths = prepare(attributes, {**TEMPLATES, "kind": ["Type {value}."]}, tmp_path / "out", class_column="kind")
    rows = pd.concat(_read(paths).values())
    assert {"Type A.", "Type B.", "Type C."} <= set(rows["caption"]) and "kind" in set(rows["descriptor"])
    paths = prepare(attributes, TEMPLATES, tmp_path / "plain", class_column="kind")
    assert "kind" not in set(pd.concat(_read(paths).values())["descriptor"])


def test_summary(prepared):
    _, out, splits = prepared
    summary = json.loads((out / "split_summary.json").read_text())
    for name, table in splits.items():
        info = summary["splits"][name]
        assert info["rows"] == len(table) and info["negatives"] == int((table["similarity"] == 0).sum())
        assert sum(c["images"] for c in info["per_class"].values()) == info["images"]


def test_wbcatt_table_works_unchanged(tmp_path):
    columns = {"cell_size": ["big", "small"], "cell_shape": ["round", "irregular"],
               "nucleus_shape": ["segmented-multilobed", "unsegmented-round", "unsegmented-band"],
               "nuclear_cytoplasmic_ratio": ["low", "high"], "chromatin_density": ["densely", "loosely"],
               "cytoplasm_vacuole": ["no", "yes"], "cytoplasm_texture": ["clear", "frosted"],
               "cytoplasm_colour": ["light blue", "blue", "purple blue"], "granule_type": ["nil", "small", "round"],
               "granule_colour": ["nil", "pink", "red", "purple"], "granularity": ["no", "yes"]}
    labels = ["Neutrophil", "Eosinophil", "Basophil", "Lymphocyte", "Monocyte"]
    rows = [{"img_name": f"BA_{i}.jpg", "label": labels[i % 5], **{c: v[i % len(v)] for c, v in columns.items()}}
            for i in range(20)]
    for row in rows:
        _png(tmp_path / "imgs" / row["img_name"])
    pd.DataFrame(rows).to_csv(tmp_path / "pbc_attr_v1_train.csv", index=False)
    templates = {"cell_size": ["The cell is {value}."], "nucleus_shape": ["The nucleus is {value}."]}
    splits = _read(prepare(tmp_path / "pbc_attr_v1_train.csv", templates, tmp_path / "out", image_column="img_name",
                           class_column="label", image_root=tmp_path / "imgs"))
    rows = pd.concat(splits.values())
    assert set(rows["descriptor"]) == set(columns) and set(rows["label"]) == set(labels)
    assert (rows[rows["similarity"] == 1].groupby("image_path").size() == 11).all()
    assert "The nuclear cytoplasmic ratio is low." in set(rows["caption"])  # the default template
    assert rows["image_path"].map(lambda p: (tmp_path / "out" / p).is_file()).all()


def test_captions_json_round_trip(tmp_path):
    entries = [("a.png", "white chair"), ("a.png", "dining chair"), ("b.png", "mug on table"),
               ("c.png", "red mug"), ("c.png", "red mug"), ("d.png", "lamp")]
    entries += [(f"e{i}.png", f"cat {i}") for i in range(6)]
    for name in {n for n, _ in entries}:
        _png(tmp_path / "images" / name)
    (tmp_path / "captions.json").write_text(json.dumps([{"file_name": n, "caption": c} for n, c in entries]))
    rows = pd.concat(_read(from_captions_json(tmp_path / "captions.json", tmp_path / "images", tmp_path / "out",
                                              negatives_per_image=2)).values())
    own = {}
    for name, caption in entries:
        own.setdefault(f"../images/{name}", set()).add(caption)
    assert set(rows["descriptor"]) == {"caption"} and set(rows["image_path"]) == set(own)
    for path, group in rows.groupby("image_path"):
        positives, negatives = group[group.similarity == 1]["caption"], group[group.similarity == 0]["caption"]
        assert sorted(positives) == sorted(own[path])  # duplicates in the JSON are written once
        assert len(negatives) == 2 and not set(negatives) & own[path]
        assert set(negatives) <= {c for _, c in entries}


def test_class_folders_round_trip(tmp_path):
    descriptions = {"HSIL": ["enlarged hyperchromatic nuclei", "high N:C ratio"], "NILM": "normal squamous cells",
                    "SCC": ["malignant squamous cells"]}
    for cls in descriptions:
        for i in range(4):
            _png(tmp_path / "root" / cls / f"{cls}_{i}.png")
    (tmp_path / "descriptions.json").write_text(json.dumps(descriptions))
    splits = _read(from_class_folders(tmp_path / "root", tmp_path / "descriptions.json", tmp_path / "out"))
    rows = pd.concat(splits.values())
    assert list(rows.columns) == ["image_path", "caption", "similarity", "descriptor", "value", "class"]
    for path, group in rows.groupby("image_path"):
        cls = path.split("/")[-2]
        assert set(group["class"]) == {cls} and set(group["descriptor"]) == {"class"}
        wanted = descriptions[cls] if isinstance(descriptions[cls], list) else [descriptions[cls]]
        assert sorted(group[group.similarity == 1]["caption"]) == sorted(wanted)
        negative = group[group.similarity == 0]["caption"].tolist()
        assert len(negative) == 1 and negative[0] not in wanted
    assert all(set(t["class"]) == set(descriptions) for t in splits.values())  # 4 per class: one in each split
    rows = pd.concat(_read(from_class_folders(tmp_path / "root", descriptions, tmp_path / "many",
                                              negatives_per_image=9)).values())
    negatives = rows[rows.similarity == 0].groupby("image_path")["caption"]
    assert negatives.nunique().equals(negatives.size()) and set(negatives.size()) == {2, 3}  # all other descriptions


@pytest.mark.parametrize("kwargs, message", [
    ({"image_column": "img_name"}, "column 'img_name'"),
    ({"class_column": "label"}, "column 'label'"),
    ({"descriptors": ["size", "texture"]}, "column 'texture'"),
])
def test_missing_columns_name_file_and_column(tmp_path, kwargs, message):
    attributes = _table(tmp_path / "data", n=6)
    with pytest.raises(CellstError, match=message) as err:
        prepare(attributes, TEMPLATES, tmp_path / "out", **kwargs)
    assert "attributes.csv" in str(err.value) and "the table has: image_path, kind" in str(err.value)


def test_empty_table(tmp_path):
    (tmp_path / "a.csv").write_text("image_path,size\n")
    with pytest.raises(CellstError, match="a.csv.*no rows"):
        prepare(tmp_path / "a.csv", {}, tmp_path / "out")


def test_template_without_value(tmp_path):
    attributes = _table(tmp_path / "data", n=6)
    (tmp_path / "t.json").write_text(json.dumps({"size": ["The cell is {value}.", "The cell is big."]}))
    with pytest.raises(CellstError, match=r"t\.json, descriptor 'size', template 2.*\{value\}"):
        prepare(attributes, tmp_path / "t.json", tmp_path / "out")


def test_unknown_template_descriptor_warns_and_default_template_is_used(tmp_path):
    attributes = _table(tmp_path / "data", n=6)
    with pytest.warns(UserWarning, match="texture"):
        paths = prepare(attributes, {"texture": ["{value}"]}, tmp_path / "out", ratios=(1, 0, 0))
    captions = set(pd.read_csv(paths["train"])["caption"])
    assert {"The size is small.", "The shape is round.", "The kind is A."} <= captions


def test_yaml_templates(tmp_path):
    attributes = _table(tmp_path / "data", n=6)
    (tmp_path / "t.yaml").write_text("size:\n  - 'Size: {value}.'\n")
    paths = prepare(attributes, tmp_path / "t.yaml", tmp_path / "out", descriptors="size", ratios=(1, 0, 0))
    assert set(pd.read_csv(paths["train"])["caption"]) == {"Size: small.", "Size: medium.", "Size: large."}
    assert pd.read_csv(paths["test"]).empty


def test_output_folder_must_be_empty_unless_overwrite(tmp_path):
    attributes = _table(tmp_path / "data", n=6)
    prepare(attributes, TEMPLATES, tmp_path / "out")
    with pytest.raises(CellstError, match="not empty.*--overwrite"):
        prepare(attributes, TEMPLATES, tmp_path / "out")
    prepare(attributes, TEMPLATES, tmp_path / "out", overwrite=True)


def test_missing_and_duplicate_images_name_the_row(tmp_path):
    attributes = _table(tmp_path / "data", n=6)
    table = pd.read_csv(attributes)
    table.loc[2, "image_path"] = "images/nowhere.png"
    table.loc[4, "image_path"] = table.loc[3, "image_path"]
    table.to_csv(attributes, index=False)
    with pytest.raises(CellstError, match=r"row 4, column 'image_path'.*not found.*row 6.*already in row 5"):
        prepare(attributes, TEMPLATES, tmp_path / "out")


@pytest.mark.parametrize("ratios", [(0.8, 0.2), (0.5, -0.1, 0.6), ("a", "b", "c")])
def test_bad_ratios(tmp_path, ratios):
    with pytest.raises(CellstError, match="split ratios"):
        prepare(_table(tmp_path / "data", n=6), TEMPLATES, tmp_path / "out", ratios=ratios)


def test_bad_captions_json_names_the_entry(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps([{"file_name": "a.png", "caption": "x"}, {"file_name": "b"}]))
    with pytest.raises(CellstError, match="captions.json, entry 2"):
        from_captions_json(tmp_path / "captions.json", tmp_path, tmp_path / "out")


def test_class_folder_without_description(tmp_path):
    _png(tmp_path / "root" / "A" / "x.png")
    _png(tmp_path / "root" / "B" / "y.png")
    with pytest.raises(CellstError, match="no description for class folder.*B"):
        from_class_folders(tmp_path / "root", {"A": "an a"}, tmp_path / "out")


def _cli(monkeypatch, argv):
    import cellst.cli as cli

    # Only this stage's commands, so the test does not depend on every other subcommand importing cleanly.
    assert {"demo_data", "prepare"} <= set(cli.COMMANDS)
    monkeypatch.setattr(cli, "COMMANDS", ["demo_data", "prepare"])
    return cli.main(argv)


def test_cli_prepare_modes(tmp_path, monkeypatch, capsys):
    attributes = _table(tmp_path / "data", n=9)
    (tmp_path / "t.json").write_text(json.dumps({d: TEMPLATES[d] for d in ("size", "shape")}))
    assert _cli(monkeypatch, ["prepare", str(attributes), "--templates", str(tmp_path / "t.json"),
                              "--out", str(tmp_path / "o1"), "--class-column", "kind", "--descriptors", "size,shape",
                              "--negatives", "2", "--ratios", "1,1,1", "--seed", "3"]) == 0
    rows = pd.concat(_read({s: tmp_path / "o1" / f"{s}_split.csv" for s in ("train", "val", "test")}).values())
    assert set(rows["descriptor"]) == {"size", "shape"} and (rows.groupby("image_path").size() == 4).all()
    printed = capsys.readouterr().out
    assert "train" in printed and "--allow-outside-root" in printed  # o1 is beside data/, so paths start with ../
    assert _cli(monkeypatch, ["prepare", str(attributes), "--templates", str(tmp_path / "t.json"),
                              "--out", str(tmp_path / "data"), "--descriptors", "size", "--overwrite"]) == 0
    assert "--allow-outside-root" not in capsys.readouterr().out  # splits beside the images need no flag
    assert _cli(monkeypatch, ["prepare", str(attributes), "--out", str(tmp_path / "o2"), "--class-column", "nope"]) == 2
    assert "column 'nope'" in capsys.readouterr().err
    assert _cli(monkeypatch, ["prepare", str(attributes), "--captions-json", "x.json", "--out", str(tmp_path)]) == 2
    assert "exactly one input" in capsys.readouterr().err


def test_cli_class_folders_and_captions(tmp_path, monkeypatch):
    for cls in ("A", "B"):
        for i in range(3):
            _png(tmp_path / "root" / cls / f"{i}.png")
    (tmp_path / "d.json").write_text(json.dumps({"A": "an a", "B": "a b"}))
    assert _cli(monkeypatch, ["prepare", "--class-folders", str(tmp_path / "root"), "--descriptions",
                              str(tmp_path / "d.json"), "--out", str(tmp_path / "o")]) == 0
    (tmp_path / "c.json").write_text(json.dumps([{"file_name": "A/0.png", "caption": "x"},
                                                 {"file_name": "B/0.png", "caption": "y"}]))
    assert _cli(monkeypatch, ["prepare", "--captions-json", str(tmp_path / "c.json"), "--image-root",
                              str(tmp_path / "root"), "--out", str(tmp_path / "o3")]) == 0


def test_cli_demo_data(tmp_path, monkeypatch, capsys):
    argv = ["demo-data", str(tmp_path / "demo"), "--images", "16", "--size", "32", "--seed", "1"]
    assert _cli(monkeypatch, argv) == 0
    assert "images/s" in capsys.readouterr().out and (tmp_path / "demo" / "val_split.csv").is_file()
    assert _cli(monkeypatch, argv) == 2  # not empty any more
    assert _cli(monkeypatch, argv + ["--overwrite"]) == 0
