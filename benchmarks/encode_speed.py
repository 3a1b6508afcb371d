"""Encoding speed: cellst's encoding against a plain transformers loop on the same batches.

cellst side: ``cellst.model.encode_images`` / ``encode_texts`` (sentence-transformers' model, cellst's pipelined image
loop). Plain side: the model's own processor and ``get_image_features`` / ``get_text_features`` under
``torch.inference_mode``, batch by batch. Both include preprocessing (resize, crop, normalise; tokenise) and
L2-normalisation, start from decoded PIL images and use the same batch size. Models are built from cellst's presets
with random weights (weights do not change speed): micro, small (96 px) and base (the ViT-B/32 shape).

Both sides run once per round, in turn; the ratio is the median over rounds of the paired speed ratio, counting only
rounds in which other processes used less than 0.15 of a core (read from /proc): on a shared machine, other tenants
and the machine's drifting speed distort single timings far more than the differences measured here. Targets: ratio >= 0.95 on base, > 1 on small.

    python benchmarks/encode_speed.py                      # a few minutes on 2 cores
    python benchmarks/encode_speed.py --scale 4 --rounds 20
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
from _common import captions, cell_images, compare, table  # noqa: E402

# Images and texts per round for each preset at --scale 1: a fraction of a second (micro, small) to a few seconds
# (base) per method on 2 cores, so that many short paired rounds fit in a few minutes.
SIZES = {"micro": (256, 1024), "small": (128, 512), "base": (32, 128)}


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
    check = np.abs(encode_images(model, images[:2 * bs], bs) - plain_images(model, images[:2 * bs], bs)).max()
    rows = []
    for what, n, methods in (
            ("images/s", n_img, {"plain": lambda: plain_images(model, images, bs),
                                 "cellst": lambda: encode_images(model, images, bs)}),
            ("texts/s", n_txt, {"plain": lambda: plain_texts(model, texts, bs),
                                "cellst": lambda: encode_texts(model, texts, bs)})):
        r = compare(methods, n, args.rounds)
        rows.append([preset, what, n, f"{r['cellst']['rate']:,.0f}", f"{r['plain']['rate']:,.0f}",
                     f"{r['cellst']['ratio']:.2f}x", f"{r['cellst']['quiet_rounds']}/{args.rounds}"])
    print(f"  {preset}: max |cellst - plain| image embedding difference {check:.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="micro,small,base")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the number of images and texts")
    p.add_argument("--image-size", type=int, default=256, help="side of the input images (microscopy crops)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=8, help="timed rounds per method (short ones: noise averages out)")
    p.add_argument("--models", help="folder to keep the built models in (default: a temporary folder)")
    args = p.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}, input images {args.image_size} px, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.models or tmp)
        rows = [row for preset in args.presets.split(",") for row in bench_preset(preset.strip(), folder, args)]
    print(table(["model", "what", "n", "cellst best", "plain best", "cellst / plain", "quiet rounds"], rows))
    print("best: items/s in the fastest round. cellst / plain: median over rounds of the paired speed ratio. quiet "
          "rounds: rounds in which other processes used under 0.15 of a core (with none, all rounds are used and the "
          "figures are unreliable).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
