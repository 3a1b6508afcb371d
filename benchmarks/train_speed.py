"""Training speed: ``cellst finetune`` against a plain PyTorch loop with the same model, loss, batches and optimiser.

Both sides start from the same PNG files on disk, decode and preprocess every batch (the plain loop with the model's
processor, cellst with its processor-exact fast path: the same pixels), embed images and captions, apply symmetric
InfoNCE (MNRL with scale 20 in both directions) and take an AdamW step. The main figure is the steady rate: samples
per second from the end of the first optimiser step to the end of the last, timed the same way on both sides (a
trainer callback; a clock in the plain loop). Beside it, the whole training stage (building the trainer and its
no-duplicates sampler, the first step and the clean-up included; evaluation and saving excluded) against the whole
plain loop. Both sides load the model outside the timing. Rounds alternate the order of the sides; the figures are
medians of per-round ratios. Target: cellst >= 0.9x the plain loop.

    python benchmarks/train_speed.py                    # micro, small, base: a few minutes on 2 idle cores
    python benchmarks/train_speed.py --presets base --images 128 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import captions, load_line, table, timed, write_split  # noqa: E402

# Training images per preset (two captions each): 16 steps of 32 pairs for micro and small, 4 for base, whose
# step takes seconds on a CPU. The steady rate leaves out the first step; the whole-run rate includes the trainer's
# set-up, which few steps cannot amortise.
IMAGES = {"micro": 256, "small": 256, "base": 64}


def pairs(train: Path) -> int:
    import pandas as pd

    return int((pd.read_csv(train)["similarity"] == 1).sum())


def cellst_rate(model_dir: Path, train: Path, out: Path, args) -> dict:
    import cellst.training
    from cellst import finetune

    stamps = StepStamps()
    # finetune takes no callbacks (its CLI could not express them); the benchmark adds its clock to cellst's list.
    callbacks = cellst.training._callbacks
    cellst.training._callbacks = lambda *a, **kw: callbacks(*a, **kw) + [stamps.callback()]
    try:
        run = finetune(model=str(model_dir), train=str(train), output=str(out), epochs=1,
                       batch_size=args.batch_size, learning_rate=1e-5, warmup_ratio=0.0, loss="mnrl",
                       mask_known_positives=False, seed=0,
                       training={"save_strategy": "no", "logging_steps": 10_000, "logging_first_step": False,
                                 "disable_tqdm": True})
    finally:
        cellst.training._callbacks = callbacks
    return stamps.rates(pairs(train), args.batch_size, run["seconds"]["train"])


class StepStamps:
    """When each optimiser step ended. The steady rate counts the samples after the first step over the time from the
    first step's end to the last one's: per-run set-up (trainer construction, the first step's allocations, the
    clean-up after training) is left out, on both sides alike."""

    def __init__(self):
        self.times: list[float] = []

    def stamp(self) -> None:
        self.times.append(time.perf_counter())

    def callback(self):
        from transformers import TrainerCallback

        stamps = self

        class Stamp(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                stamps.stamp()

        return Stamp()

    def rates(self, samples: int, batch_size: int, seconds: float) -> dict:
        """Steady and whole-run samples/s, and the seconds the whole run took beyond the steady steps (set-up)."""
        if len(self.times) < 2:
            raise SystemExit("a steady rate needs at least two steps: give more --images")
        steady = self.times[-1] - self.times[0]
        return {"steady": (samples - batch_size) / steady, "whole": samples / seconds, "setup": seconds - steady}


def plain_rate(model_dir: Path, train: Path, args) -> dict:
    """The same work as a hand-written loop: decode, preprocess, embed, InfoNCE, AdamW, batch after batch."""
    import pandas as pd
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    frame = pd.read_csv(train)
    frame = frame[frame["similarity"] == 1].sample(frac=1.0, random_state=0)
    model, processor = CLIPModel.from_pretrained(model_dir), CLIPProcessor.from_pretrained(model_dir)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)
    model.train()
    stamps, start = StepStamps(), time.perf_counter()
    for i in range(0, len(frame), args.batch_size):
        batch = frame.iloc[i:i + args.batch_size]
        images = [Image.open(train.parent / p).convert("RGB") for p in batch["image_path"]]
        pixels = processor(images=images, return_tensors="pt")
        text = processor(text=list(batch["caption"]), return_tensors="pt", padding=True, truncation=True)
        img = torch.nn.functional.normalize(_features(model.get_image_features(**pixels)), dim=-1)
        txt = torch.nn.functional.normalize(_features(model.get_text_features(**text)), dim=-1)
        scores, target = 20.0 * img @ txt.T, torch.arange(len(batch))
        loss = (torch.nn.functional.cross_entropy(scores, target) +
                torch.nn.functional.cross_entropy(scores.T, target)) / 2
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        stamps.stamp()
    return stamps.rates(len(frame), args.batch_size, time.perf_counter() - start)


def _features(output):
    return getattr(output, "pooler_output", output)


def rounds(model_dir: Path, train: Path, tmp: Path, args) -> list[dict]:
    """Per round: each side's rates and the cores other processes used meanwhile. The order alternates between
    rounds so that neither side always runs second, after the other has warmed caches or in a busier minute."""
    sides = {"plain": lambda r: plain_rate(model_dir, train, args),
             "cellst": lambda r: cellst_rate(model_dir, train, tmp / f"run{r}", args)}
    out = []
    for r in range(args.rounds):
        rate, others = {}, []
        for name in (("plain", "cellst") if r % 2 == 0 else ("cellst", "plain")):
            others.append(timed(lambda: rate.update({name: sides[name](r)}))["others"])
        out.append({**rate, "others": max(others)})
    return out


def bench_preset(preset: str, tmp: Path, args) -> dict:
    from cellst.scratch import init_model

    model_dir = init_model(tmp / preset / "model", preset, captions(200))
    n_images = args.images or IMAGES[preset]
    train = write_split(tmp / preset / "data", n_images, args.image_size)
    # Warm-up on two batches of such files: lazy imports and first-call allocations, counted on neither side.
    warm = write_split(tmp / preset / "warm", args.batch_size, args.image_size, seed=10**6)
    plain_rate(model_dir, warm, args), cellst_rate(model_dir, warm, tmp / preset / "warm-run", args)
    results = rounds(model_dir, train, tmp / preset, args)
    ratio = {k: [r["cellst"][k] / r["plain"][k] for r in results] for k in ("steady", "whole")}
    for i, r in enumerate(results):
        print(f"  {preset} round {i + 1}: steady cellst {r['cellst']['steady']:.1f}/s, plain "
              f"{r['plain']['steady']:.1f}/s ({ratio['steady'][i]:.2f}x); whole run {ratio['whole'][i]:.2f}x; other "
              f"processes {r['others']:.1f} cores", flush=True)
    return {"preset": preset, "pairs": 2 * n_images, **{f"{side}": max(r[side]["steady"] for r in results)
                                                        for side in ("cellst", "plain")},
            "ratio": float(np.median(ratio["steady"])), "range": (min(ratio["steady"]), max(ratio["steady"])),
            "whole": float(np.median(ratio["whole"])),
            **{f"setup_{side}": float(np.median([r[side]["setup"] for r in results])) for side in ("cellst", "plain")},
            "others": float(np.median([r["others"] for r in results]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="micro,small,base", help="model shapes (random weights)")
    p.add_argument("--images", type=int, help="training images per preset (two captions each: 2x pairs); default "
                   + ", ".join(f"{k} {v}" for k, v in IMAGES.items()))
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="rounds of (plain, cellst), order alternating")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice, one per core)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, input images {args.image_size} px")
    print(f"before: {load_line()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = [bench_preset(preset.strip(), Path(tmp), args) for preset in args.presets.split(",")]
    print(f"after: {load_line()}")
    rows = [[f["preset"], f["pairs"], args.rounds, f"{f['cellst']:.1f}", f"{f['plain']:.1f}", f"{f['ratio']:.2f}x",
             "{:.2f}-{:.2f}".format(*f["range"]), f"{f['whole']:.2f}x", f"{f['setup_cellst']:.1f}",
             f"{f['setup_plain']:.1f}", f"{f['others']:.1f}"] for f in found]
    print(table(["model", "pairs", "rounds", "cellst best/s", "plain best/s", "cellst / plain", "range",
                 "whole run", "set-up s cellst", "plain", "others' cores"], rows))
    print("best/s: steady training samples (pairs) per second, after the first step, in the fastest round. cellst / "
          "plain: median over rounds of the paired steady ratio (range beside it); target >= 0.9x. whole run: the "
          "same for the whole training stage, set-up included (it shrinks as runs grow longer). set-up s: median "
          "seconds of the whole stage beyond the steady steps (the first step; for cellst also building the trainer, "
          "whose model card decodes a few hundred images for its statistics, and the trainer's clean-up). others' "
          "cores: median CPU cores other processes used.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
