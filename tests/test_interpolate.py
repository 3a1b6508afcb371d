"""WiSE-FT: blended weights lie on the line between base and tuned, ends reproduce both models, and the sweep reports
the split figures of each blend."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cellst import finetune
from cellst.cli import interpolate as interpolate_cmd
from cellst.errors import CellstError
from cellst.evaluation import evaluate
from cellst.interpolate import blend, interpolate, sweep
from cellst.model import load_model
from cellst.scratch import init_model

from test_weights import run_cli

FAST = dict(epochs=2, batch_size=4, learning_rate=1e-3, warmup_ratio=0.0)


@pytest.fixture
def tuned_run(tiny_model_dir, tiny_splits, tmp_path):
    out = tmp_path / "tuned"
    finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(out), **FAST)
    return out


def test_blend_is_the_weighted_mean_and_the_written_folder_loads(tiny_model_dir, tuned_run, tmp_path):
    out = interpolate(tiny_model_dir, tuned_run, 0.25, tmp_path / "wise")
    base, tuned, mixed = (load_file(p / "model.safetensors") for p in (tiny_model_dir, tuned_run, out))
    for name, t in tuned.items():
        if t.is_floating_point():
            torch.testing.assert_close(mixed[name], 0.75 * base[name] + 0.25 * tuned[name])
    model = load_model(out)  # configs and processor files came along
    assert model.encode(["The cell is red."]).shape[1] == 32


def test_ends_of_the_sweep_are_the_two_models(tiny_model_dir, tuned_run, tiny_splits):
    results = sweep(tiny_model_dir, tuned_run, tiny_splits["test"], alphas=(0.0, 1.0))
    for alpha, folder in ((0.0, tiny_model_dir), (1.0, tuned_run)):
        expected = evaluate(load_model(folder), tiny_splits["test"], progress=False)
        got = next(r["records"] for r in results if r["alpha"] == alpha)
        for mine, theirs in zip(got, expected):
            assert mine["metrics"] == pytest.approx(theirs["metrics"], abs=1e-6)


def test_cli_prints_a_sweep_and_writes_the_blend(tiny_model_dir, tuned_run, tiny_splits, tmp_path, capsys):
    code = run_cli(interpolate_cmd, ["interpolate", str(tiny_model_dir), str(tuned_run), "--alpha", "0.5",
                                     "--out", str(tmp_path / "half"), "--split", str(tiny_splits["test"]),
                                     "--alphas", "0,0.5,1"])
    assert code == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.strip()[:4] in ("0.00", "0.50", "1.00")]
    assert len(lines) == 3 and "text_to_image/pair/non-specific/recall@5" in printed
    assert (tmp_path / "half" / "model.safetensors").exists()


def test_different_architectures_are_refused(tiny_model_dir, tmp_path):
    other = init_model(tmp_path / "small", preset="small", captions=["The cell is red."])
    with pytest.raises(CellstError, match="differ in architecture"):
        blend(load_file(tiny_model_dir / "model.safetensors"), load_file(other / "model.safetensors"), 0.5)
    with pytest.raises(CellstError, match="no model.safetensors"):
        interpolate(tiny_model_dir, tmp_path, 0.5, tmp_path / "out")
