"""Which weights train: frozen towers stay bit-identical, LoRA adapters reload to the reported figures and merge, and
GradCache (--mini-batch-size) computes the same loss and gradients as plain MNRL."""

from __future__ import annotations

import argparse
import copy
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cellst import finetune
from cellst.data import read_split
from cellst.errors import CellstError
from cellst.evaluation import evaluate
from cellst.images import load_rgb
from cellst.model import load_model

from conftest import COLOURS, draw

FAST = dict(epochs=2, batch_size=4, learning_rate=1e-3, warmup_ratio=0.0)
TOWER_PREFIXES = {"vision": ("vision_model.", "visual_projection."), "text": ("text_model.", "text_projection.")}


def run_cli(module, argv: list[str]) -> int:
    """Run one cellst.cli subcommand module on ``argv`` (registered in a parser of its own, as cellst.cli does)."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def changed(before: dict, after: dict, prefixes: tuple[str, ...]) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before if k.startswith(prefixes)}


@pytest.mark.parametrize("tower", ["vision", "text"])
def test_frozen_tower_is_saved_unchanged_and_the_other_tower_trains(tower, tiny_model_dir, tiny_splits, tmp_path):
    out = tmp_path / "run"
    run = finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(out), freeze=tower, **FAST)
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    frozen = changed(before, after, TOWER_PREFIXES[tower])
    other = changed(before, after, TOWER_PREFIXES["text" if tower == "vision" else "vision"])
    assert frozen and not any(frozen.values())
    assert any(other.values())
    assert "trainable" in run["metrics"]["trainable"]


def test_unfreeze_last_trains_only_the_top_of_the_frozen_tower(tiny_model_dir, tiny_splits, tmp_path):
    out = tmp_path / "run"
    finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), output=str(out), freeze="text",
             unfreeze_last=1, **FAST)
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    top = changed(before, after, ("text_model.encoder.layers.1.mlp", "text_model.final_layer_norm.",
                                  "text_projection."))
    assert top and all(top.values())
    kept = changed(before, after, ("text_model.embeddings.", "text_model.encoder.layers.0."))
    assert kept and not any(kept.values())


def test_unfreeze_last_checks(tiny_model_dir, tiny_splits, tmp_path):
    base = dict(model=str(tiny_model_dir), train=str(tiny_splits["train"]), **FAST)
    with pytest.raises(CellstError, match="add --freeze"):
        finetune(output=str(tmp_path / "a"), unfreeze_last=1, **base)
    with pytest.raises(CellstError, match="has 2 encoder layers"):
        finetune(output=str(tmp_path / "b"), freeze="vision", unfreeze_last=5, **base)


def test_lora_adapter_reloads_to_the_reported_figures_and_merges(tiny_model_dir, tiny_splits, tmp_path):
    pytest.importorskip("peft")
    from transformers import CLIPModel

    from cellst.cli import merge_lora as merge_cmd

    out = tmp_path / "lora"
    finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), val=str(tiny_splits["val"]),
             test=str(tiny_splits["test"]), output=str(out), lora=True, lora_rank=4, freeze="vision",
             **{**FAST, "learning_rate": 1e-2})
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and not any("vision_model" in k for k in adapter)  # the frozen tower got no adapters
    assert any(k.endswith("lora_B.weight") and t.abs().sum() > 0 for k, t in adapter.items())
    reported = json.loads((out / "metrics.json").read_text())["after"]
    recomputed = evaluate(load_model(out), tiny_splits["test"], progress=False)
    assert [(r["direction"], r["rule"], r["scope"]) for r in recomputed] == \
        [(r["direction"], r["rule"], r["scope"]) for r in reported]
    for mine, theirs in zip(recomputed, reported):
        assert mine["metrics"] == pytest.approx(theirs["metrics"], abs=1e-12)

    merged = tmp_path / "merged"
    assert run_cli(merge_cmd, ["merge-lora", str(out), str(merged)]) == 0
    image = load_rgb(read_split(tiny_splits["test"])["image"].iloc[0])
    np.testing.assert_allclose(load_model(merged).encode([image]), load_model(out).encode([image]), atol=1e-5)
    CLIPModel.from_pretrained(merged)  # a full model: loads without PEFT
    assert (merged / "metrics.json").exists()


def test_lora_without_peft_says_how_to_install(monkeypatch):
    from cellst.lora import require_peft

    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError
    with pytest.raises(CellstError, match=r"pip install 'cellst\[lora\]'"):
        require_peft()


def test_cached_mnrl_gives_the_plain_loss_and_gradients(tiny_model):
    from cellst.losses import LOSSES, LossOptions

    images = [draw(list(COLOURS)[i % 4], "round", size=24, seed=i) for i in range(32)]
    captions = [f"The cell number {i} is {list(COLOURS)[i % 4]}." for i in range(32)]
    tiny_model.train()

    def loss_and_grads(options):
        model = copy.deepcopy(tiny_model)
        value = LOSSES["mnrl"].build(model, options, None)([model.preprocess(images), model.preprocess(captions)],
                                                           torch.zeros(32))
        value.backward()
        return value.item(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, plain_grads = loss_and_grads(LossOptions(mask_known_positives=False))
    cached, cached_grads = loss_and_grads(LossOptions(mini_batch_size=4, mask_known_positives=False))
    assert cached == pytest.approx(plain, rel=1e-5)
    assert plain_grads.keys() == cached_grads.keys() and len(plain_grads) > 50
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, atol=1e-5, rtol=1e-4)


def distinct_split(folder, n: int):
    """A split whose every caption is distinct, so a batch of 32 fills under the no-duplicates sampler."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % 4]
        draw(colour, "round", seed=i).save(folder / f"images/d{i}.png")
        rows.append((f"images/d{i}.png", f"The cell number {i} is {colour}.", 1, "colour"))
    path = folder / "distinct_split.csv"
    pd.DataFrame(rows, columns=["image_path", "caption", "similarity", "descriptor"]).to_csv(path, index=False)
    return path


def test_batch_of_32_in_mini_batches_of_4_trains_like_the_whole_batch(tiny_model_dir, tmp_path):
    train = distinct_split(tmp_path, 32)

    def first_step(name, **kw):
        finetune(model=str(tiny_model_dir), train=str(train), output=str(tmp_path / name), batch_size=32,
                 learning_rate=1e-3, warmup_ratio=0.0, mask_known_positives=False,
                 training={"max_steps": 1, "logging_steps": 1}, **kw)
        log = [json.loads(x) for x in (tmp_path / name / "trainer_log.jsonl").read_text().splitlines()]
        return next(e for e in log if "loss" in e)

    whole, cached = first_step("whole"), first_step("cached", mini_batch_size=4)
    assert cached["loss"] == pytest.approx(whole["loss"], rel=1e-4)
    assert cached["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-3)
