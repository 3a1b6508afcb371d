"""Encoding speed: cellst's encoding against a plain transformers loop on the same batches.

cellst side: ``cellst.model.encode_images`` / ``encode_texts`` (sentence-transformers' model, cellst's pipelined image
loop). Plain side: the model's own processor and ``get_image_features`` / ``get_text_features`` under
``torch.inference_mode``, batch by batch. Both include preprocessing (resize, crop, normalise; tokenise) and
L2-normalisation, start from decoded PIL images and use the same batch size. Models are built from cellst's presets
with random weights (weights do not change speed): micro, small (96 px) and base (the ViT-B/32 shape).

Both sides run once per round, in turn, the order alternating. Each round is short (well under a second for micro and
small, a few seconds for base), so that many paired rounds fit in a few minutes: on a shared machine, other tenants
and the machine's drifting speed distort single timings far more than the differences measured here, and a ratio
taken within one round cancels most of that. The table gives the median paired wall-time ratio with its quartiles,
the same ratio in this process's CPU seconds, and how many cores other processes used meanwhile; the load average is
printed before and after. Targets: ratio >= 0.95 on base, > 1 on small.

    python benchmarks/encode_speed.py                      # a few minutes on 2 cores
    python benchmarks/encode_speed.py --presets base --rounds-scale 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import captions, cell_images, compare, load_line, table  # noqa: E402

# Images and texts per round for each preset at --scale 1, and its rounds at --rounds-scale 1: about 0.2 s (micro,
# small) to 1-2 s (base) per method on 2 idle cores, so that each preset takes about a minute on a quiet machine.
SIZES = {"micro": (128, 512), "small": (64, 256), "base": (32, 128)}
ROUNDS = {"micro": 20, "small": 20, "base": 6}


def plain_images(model, images: list, batch_size: int) -> np.ndarray:
    processor, clip = model[0].processor, model[0].auto_model
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            features = clip.get_image_features(**processor(images=images[i:i + batch_size], return_tensors="pt"))
            features = getattr(features, "pooler_output", features)
            out.append(torch.nn.functional.normalize(features, dim=1))
    return torch.cat(out).numpy()


def plain_texts(model, texts: list, batch_size: int) -> np.ndarray:
    processor, clip = model[0].processor, model[0].auto_model
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            inputs = processor(text=texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True)
            features = clip.get_text_features(**inputs)
            features = getattr(features, "pooler_output", features)
            out.append(torch.nn.functional.normalize(features, dim=1))
    return torch.cat(out).numpy()


def rate(items_per_second: float) -> str:
    return f"{items_per_second:,.0f}" if items_per_second >= 100 else f"{items_per_second:.1f}"


def bench_preset(preset: str, folder: Path, args) -> list[list]:
    from cellst.model import encode_images, encode_texts, load_model
    from cellst.scratch import init_model

    n_img, n_txt = (max(args.batch_size, int(v * args.scale)) for v in SIZES[preset])
    path = folder / preset
    if not path.exists():
        init_model(path, preset, captions(200))
    model = load_model(path)
    images, texts = cell_images(n_img, args.image_size), captions(n_txt)
    bs = args.batch_size
    # Same batches, same preprocessing output: the embeddings agree (to float rounding; 0 when the pixels are equal).
    check = {"image": np.abs(encode_images(model, images[:2 * bs], bs) - plain_images(model, images[:2 * bs], bs)),
             "text": np.abs(encode_texts(model, texts[:2 * bs], bs) - plain_texts(model, texts[:2 * bs], bs))}
    rounds = max(3, round(ROUNDS[preset] * args.rounds_scale))
    rows = []
    for what, n, methods in (
            ("images/s", n_img, {"plain": lambda: plain_images(model, images, bs),
                                 "cellst": lambda: encode_images(model, images, bs)}),
            ("texts/s", n_txt, {"plain": lambda: plain_texts(model, texts, bs),
                                "cellst": lambda: encode_texts(model, texts, bs)})):
        r = compare(methods, n, rounds)
        c = r["cellst"]
        rows.append([preset, what, n, rounds, rate(c["rate"]), rate(r["plain"]["rate"]),
                     f"{c['ratio']:.2f}x", f"{c['q1']:.2f}-{c['q3']:.2f}", f"{c['cpu_ratio']:.2f}x",
                     f"{c['others']:.1f}"])
        print("  " + "  ".join(map(str, rows[-1])), flush=True)
    print(f"  {preset}: max |cellst - plain| embedding difference: images {check['image'].max():.1e}, texts "
          f"{check['text'].max():.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="micro,small,base")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the number of images and texts")
    p.add_argument("--image-size", type=int, default=256, help="side of the input images (microscopy crops)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds-scale", type=float, default=1.0,
                   help="multiply the rounds per preset (20 micro, 20 small, 6 base; at least 3)")
    p.add_argument("--models", help="folder to keep the built models in (default: a temporary folder)")
    p.add_argument("--threads", type=int, help="torch threads, and cellst's resize threads (default: one per core). "
                   "On a busy machine 1 is steadier: threads that wait for a descheduled sibling spin")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, input images {args.image_size} px, batch {args.batch_size}")
    print(f"before: {load_line()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.models or tmp)
        rows = [row for preset in args.presets.split(",") for row in bench_preset(preset.strip(), folder, args)]
    print(f"after: {load_line()}")
    print(table(["model", "what", "n/round", "rounds", "cellst best", "plain best", "cellst / plain", "quartiles",
                 "CPU-time ratio", "others' cores"], rows))
    print("best: items/s in the fastest round. cellst / plain: median over rounds of the paired wall-time speed ratio "
          "(quartiles beside it). CPU-time ratio: the same in this process's CPU seconds (less disturbed by other "
          "processes; blind to using more cores). others' cores: median CPU cores other processes used meanwhile.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
