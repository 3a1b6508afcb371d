"""The run report, its pictures and ``cellst compare``, on real tiny finetune runs (one per loss).

The report's figures are parsed back out of report.md and report.html and compared with metrics.json.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import make_split
from PIL import Image

from cellst.compare import compare_runs
from cellst.report import ARROWS, write_report

LOSSES = ("mnrl", "contrastive", "cosine")
FIGURES = {"training_curves", "headline_bars", "descriptor_bars", "retrieval_grid", "pair_heatmap", "class_heatmap"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the many small runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, one_thread):
    from cellst import finetune

    root = tmp_path_factory.mktemp("runs")
    splits = {"train": make_split(root / "data", "train", 16, seed=1, start=0),
              "val": make_split(root / "data", "val", 8, seed=2, start=100),
              "test": make_split(root / "data", "test", 8, seed=3, start=200)}
    for loss in LOSSES:
        finetune(model=str(tiny_model_dir), **{k: str(v) for k, v in splits.items()}, output=str(root / loss),
                 loss=loss, epochs=2 if loss == "mnrl" else 1, batch_size=4, learning_rate=1e-3,
                 training={"logging_steps": 2})
    return {"root": root, "splits": splits, **{loss: root / loss for loss in LOSSES}}


@pytest.fixture(scope="module")
def report(runs):
    run = runs["mnrl"]
    original = json.loads((run / "metrics.json").read_text())
    paths = write_report(run)
    return run, original, paths, json.loads((run / "metrics.json").read_text())


def md_tables(text: str) -> dict[str, list[dict]]:
    """Tables of report.md under their nearest heading (a heading's second table gets the suffix ' #2')."""
    tables, heading, lines, i = {}, None, text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("# ").strip()
        elif lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split(" | ")])
                i += 1
            tables[heading if heading not in tables else heading + " #2"] = [dict(zip(block[0], r)) for r in block[2:]]
            continue
        i += 1
    return tables


def html_tables(page: str) -> dict[str, list[dict]]:
    """The same from report.html: each table under the heading before it."""
    tables, heading = {}, None
    for match in re.finditer(r"<(h[23])>(.*?)</\1>|<table>(.*?)</table>", page, re.S):
        if match.group(1):
            heading = html.unescape(match.group(2))
            continue
        rows = [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)]
                for row in re.findall(r"<tr>(.*?)</tr>", match.group(3))]
        tables[heading if heading not in tables else heading + " #2"] = [dict(zip(rows[0], r)) for r in rows[1:]]
    return tables


def same(cell: str, value) -> bool:
    """A report cell shows ``value`` at four decimals (a dash when missing)."""
    if value is None:
        return cell == "\u2014"
    return abs(float(cell) - value) <= 5e-5 and len(cell.split(".")[-1]) == 4


def test_report_writes_pictures_and_documents(report):
    run, _, paths, _ = report
    assert FIGURES <= set(paths) and {"markdown", "html"} <= set(paths)
    for name in FIGURES:
        assert paths[name] == run / "figures" / f"{name}.png"
        with Image.open(paths[name]) as im:
            pixels = np.asarray(im.convert("RGB"), float)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, name
        assert pixels.std() > 10, f"{name} looks blank"
        colours = np.unique(pixels.astype(np.int64) @ np.array([65536, 256, 1]))
        assert len(colours) > 50, f"{name} has too few colours to be a plot"


def test_metrics_json_keeps_its_keys_and_gains_the_new_figures(report):
    _, original, _, metrics = report
    for key, value in original.items():
        assert metrics[key] == value, key
    assert {r["model"] for r in metrics["baselines"]} == {"random", "tfidf"}
    assert {"before", "after"} <= set(metrics["similarity"]) and "pearson" in metrics["similarity"]["after"]
    assert metrics["zero_shot"]["after"]["n_classes"] == 4
    assert metrics["zero_shot"]["after"]["chance"] == pytest.approx(0.25)


def test_report_figures_equal_metrics_json(report):
    run, _, paths, metrics = report
    models = {"before": metrics["before"], "after": metrics["after"],
              **{m: [r for r in metrics["baselines"] if r["model"] == m] for m in ("random", "tfidf")}}
    for tables in (md_tables(paths["markdown"].read_text()), html_tables(paths["html"].read_text())):
        checked = 0
        for r in metrics["after"]:
            if ":" in r["scope"]:
                continue
            rows = {row["model"]: row for row in tables[f"{ARROWS[r['direction']]} \u00b7 {r['rule']} rule \u00b7 "
                                                        f"{r['scope']}"]}
            assert set(rows) == set(models)
            for model, records in models.items():
                [rec] = [x for x in records if (x["direction"], x["rule"], x["scope"]) ==
                         (r["direction"], r["rule"], r["scope"])]
                for key in ("accuracy@1", "accuracy@5", "recall@10", "mrr@10", "ndcg@10", "map@100", "mean_rank",
                            "median_rank"):
                    assert same(rows[model][key], rec["metrics"].get(key)), (model, r["scope"], key)
                    checked += 1
        assert checked >= 8 * 4 * 8
        similarity = {row["model"]: row for row in tables["Embedding similarity of the labelled pairs"]}
        for model in ("before", "after"):
            for key in ("pearson", "spearman", "accuracy", "f1", "ap"):
                assert same(similarity[model][key], metrics["similarity"][model][key]), (model, key)
        shots = {row["model"]: row for row in tables["Zero-shot cell type"]}
        assert same(shots["after"]["accuracy"], metrics["zero_shot"]["after"]["accuracy"])
        per_descriptor = {row["descriptor"]: row for row in tables["text \u2192 image \u00b7 pair rule \u00b7 per descriptor"]}
        [colour] = [r for r in metrics["after"] if (r["direction"], r["rule"], r["scope"]) ==
                    ("text_to_image", "pair", "specific:colour")]
        assert same(per_descriptor["colour"]["recall@5 after"], colour["metrics"]["recall@5"])


def test_html_is_self_contained(report):
    _, _, paths, _ = report
    page = paths["html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(FIGURES)
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_report_on_another_split_when_the_start_model_is_gone(runs):
    run = runs["contrastive"]
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["model"] = str(runs["root"] / "moved-away")  # as a hub id would be while offline
    (run / "metrics.json").write_text(json.dumps(metrics))
    paths = write_report(run, test_split=runs["splits"]["val"])
    stored = json.loads((run / "metrics.json").read_text())
    assert stored["report_records"]["split"] == str(runs["splits"]["val"])
    assert "after" in stored["report_records"] and "before" not in stored["report_records"]
    assert set(stored["similarity"]) == {"split", "after"} and stored["baselines"][0]["split"] == "val"
    text = paths["markdown"].read_text()
    assert "could not be loaded" in text and "**val** split" in text
    assert stored["after"] == metrics["after"]  # the test-split figures stay as training wrote them


def cli(module, argv):
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.run(args)


def test_compare_prints_one_table_with_one_row_per_run(runs, capsys, tmp_path):
    from cellst.cli import compare

    dirs = [str(runs[loss]) for loss in LOSSES]
    assert cli(compare, ["compare", *dirs, "--out", str(tmp_path / "table.csv")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if "pair acc@1" in line)
    assert [line.split()[0] for line in lines[header + 1:header + 4]] == list(LOSSES)
    table = pd.read_csv(tmp_path / "table.csv")
    assert table["loss"].tolist() == list(LOSSES)
    after = json.loads((runs["cosine"] / "metrics.json").read_text())["after"]
    [ns] = [r for r in after if (r["direction"], r["rule"], r["scope"]) == ("text_to_image", "pair", "non-specific")]
    assert table.loc[2, "pair acc@1"] == pytest.approx(ns["metrics"]["accuracy@1"])
    assert compare_runs(dirs).shape[0] == 3


def test_cli_report_is_thin(monkeypatch, capsys, tmp_path):
    from cellst import report as report_module
    from cellst.cli import report as report_cli

    seen = {}
    monkeypatch.setattr(report_module, "write_report", lambda *a, **k: seen.update(args=a, kwargs=k) or
                        {"html": tmp_path / "report.html"})
    assert cli(report_cli, ["report", "runs/x", "--split", "val.csv", "--template", "{class}!"]) == 0
    assert seen["args"] == ("runs/x",)
    assert seen["kwargs"] == {"test_split": "val.csv", "class_column": None, "template": "{class}!"}
    assert "report.html" in capsys.readouterr().out
