"""`cellst demo` end to end at toy size: data, from-scratch model, training, figures, report; never overwrites."""

from __future__ import annotations

import json

from cellst.cli import main


def test_demo_runs_end_to_end_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--output", str(out), "--images", "48", "--size", "32", "--preset", "micro", "--epochs", "1",
            "--batch-size", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "cell-type zero-shot accuracy" in printed and "chance" in printed
    summary = json.loads((out / "demo_summary.json").read_text())
    figures = summary["figures"]
    assert 0 <= figures["zero_shot_after"] <= 1 and figures["zero_shot_chance"] == 1 / 8
    assert 0 < figures["caption_accuracy@1_chance"] < figures["caption_accuracy@5_chance"] < 1
    run = out / "run"
    for name in ("model.safetensors", "metrics.json", "report.html", "report.md"):
        assert (run / name).exists(), name
    assert main(argv) == 2  # a second run into the same folder is refused
    assert "not empty" in capsys.readouterr().err
