"""Training speed: ``cellst finetune`` against a plain PyTorch loop with the same model, loss, batches and optimiser.

Both sides start from the same PNG files on disk, decode and preprocess every batch (the model's own processor), embed
images and captions, apply symmetric InfoNCE (MNRL with scale 20 in both directions) and take an AdamW step. cellst's
figure is the wall time of its training step (the trainer, its no-duplicates sampler and data loader included, the
evaluation and saving excluded); the plain loop is written out below. Target: cellst >= 0.9x the plain loop.

    python benchmarks/train_speed.py                    # small preset, 2,048 pairs: a few minutes on 2 cores
    python benchmarks/train_speed.py --preset base --images 64
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import captions, table, timed, write_split  # noqa: E402


def pairs(train: Path) -> int:
    import pandas as pd

    return int((pd.read_csv(train)["similarity"] == 1).sum())


def cellst_rate(model_dir: Path, train: Path, out: Path, args) -> float:
    from cellst import finetune

    run = finetune(model=str(model_dir), train=str(train), output=str(out), epochs=1, batch_size=args.batch_size,
                   learning_rate=1e-5, warmup_ratio=0.0, loss="mnrl", mask_known_positives=False, seed=0,
                   training={"save_strategy": "no", "logging_steps": 10_000, "disable_tqdm": True})
    return pairs(train) / run["seconds"]["train"]


def plain_rate(model_dir: Path, train: Path, args) -> float:
    """The same work as a hand-written loop: decode, preprocess, embed, InfoNCE, AdamW, batch after batch."""
    import pandas as pd
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    frame = pd.read_csv(train)
    frame = frame[frame["similarity"] == 1].sample(frac=1.0, random_state=0)
    model, processor = CLIPModel.from_pretrained(model_dir), CLIPProcessor.from_pretrained(model_dir)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)
    model.train()
    start = time.perf_counter()
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
    return len(frame) / (time.perf_counter() - start)


def _features(output):
    return getattr(output, "pooler_output", output)


def rounds(model_dir: Path, train: Path, tmp: Path, args) -> list[dict]:
    """Per round: samples/s of each side and the CPU share other processes took meanwhile."""
    out = []
    for r in range(args.rounds):
        rate = {}
        _, others_plain = timed(lambda: rate.update(plain=plain_rate(model_dir, train, args)))
        _, others_cellst = timed(lambda: rate.update(cellst=cellst_rate(model_dir, train, tmp / f"run{r}", args)))
        out.append({**rate, "quiet": max(others_plain, others_cellst) < 0.15})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", help="model shape: micro, small or base (random weights)")
    p.add_argument("--images", type=int, default=1024, help="training images (two captions each: 2x pairs)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="rounds of (plain, cellst); figures use the quiet ones")
    args = p.parse_args(argv)
    import numpy as np

    from cellst.scratch import init_model

    print(f"torch threads {torch.get_num_threads()}, {args.preset} model, {2 * args.images} pairs, batch "
          f"{args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = init_model(tmp / "model", args.preset, captions(200))
        train = write_split(tmp / "data", args.images, args.image_size)
        results = rounds(model_dir, train, tmp, args)
    use = [r for r in results if r["quiet"]] or results
    ratio = float(np.median([r["cellst"] / r["plain"] for r in use]))
    rows = [[i + 1, f"{r['cellst']:.1f}", f"{r['plain']:.1f}", f"{r['cellst'] / r['plain']:.2f}x",
             "yes" if r["quiet"] else "no"] for i, r in enumerate(results)]
    print(table(["round", "cellst samples/s", "plain samples/s", "cellst / plain", "quiet"], rows))
    print(f"median cellst / plain over {'quiet' if use is not results else 'all'} rounds: {ratio:.2f}x "
          "(target >= 0.9x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
