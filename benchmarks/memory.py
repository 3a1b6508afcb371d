"""Peak memory of ``cellst finetune`` with 1x and 10x the images: images are decoded when a batch needs them.

Each size runs in a fresh process (``--child``) that writes its split, fine-tunes for one epoch with a test split of a
quarter the size (so evaluation's encoding is measured too) and reports its peak resident memory. Decoded, the 10x
images would need ``n * side^2 * 3`` bytes more than the 1x run (printed beside the figures); lazily decoded, the peak
hardly moves. Target: peak(10x) <= 1.2 * peak(1x).

    python benchmarks/memory.py                        # 100 vs 1,000 images of 256 px: a few minutes on 2 cores
    python benchmarks/memory.py --images 1000 --image-size 512
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import captions, load_line, table, write_split  # noqa: E402


def child(n_images: int, size: int, preset: str, folder: Path) -> dict:
    """Fine-tune on ``n_images`` in this process; return the peak RSS in MiB and the seconds taken."""
    from cellst import finetune
    from cellst.scratch import init_model

    model = init_model(folder / "model", preset, captions(200))
    train = write_split(folder / "train", n_images, size)
    test = write_split(folder / "test", max(8, n_images // 4), size, seed=10**6)
    run = finetune(model=str(model), train=str(train), test=str(test), output=str(folder / "run"), epochs=1,
                   batch_size=32, learning_rate=1e-4, warmup_ratio=0.0,
                   training={"save_strategy": "no", "disable_tqdm": True})
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB
    return {"images": n_images, "peak_mib": peak_kib / 1024, "seconds": sum(run["seconds"].values())}


def measure(n_images: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--child", str(n_images), "--image-size", str(args.image_size),
                   "--preset", args.preset, "--folder", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"child run failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100, help="images in the 1x run (the 10x run has ten times as many)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--preset", default="micro", help="model preset; memory here is about data, so micro by default")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.image_size, args.preset, Path(args.folder))))
        return 0
    print(f"before: {load_line()}", flush=True)
    small, large = measure(args.images, args), measure(10 * args.images, args)
    print(f"after: {load_line()}")
    decoded_mib = 9 * args.images * args.image_size ** 2 * 3 / 2**20
    rows = [[r["images"], f"{r['peak_mib']:.0f}", f"{r['seconds']:.0f}"] for r in (small, large)]
    print(table(["images", "peak RSS MiB", "seconds"], rows))
    print(f"10x / 1x peak: {large['peak_mib'] / small['peak_mib']:.2f} (target <= 1.2); holding the extra images "
          f"decoded would add {decoded_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
