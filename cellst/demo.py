"""``cellst demo``: the whole job offline, in minutes, on a CPU.

Synthetic blood-smear cells -> thesis-format splits -> a small CLIP built from scratch (or ``model=<hub id>``) ->
test figures before -> MNRL fine-tuning -> test figures after -> report. It prints where everything is, how long each
stage took, and the headline figures beside their chance rates, so a new user can see that training worked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CellstError

# The demo's captions name the type this way (cellst.synth.TEMPLATES["cell_type"]); zero-shot asks the same question.
ZERO_SHOT_TEMPLATE = "This white blood cell is a {class}."
# The caption-level task: every distinct caption of the test split queries all its images; an image counts when the
# split says the caption is true of it, in any phrasing (the `caption` rule). accuracy@1 is the headline: at @5 even
# an untrained model scores about 0.65, since "Nucleoli are absent." is true of most cells.
HEADLINE = ("text_to_image", "caption", "non-specific", "accuracy@1")
CAPTION_KS = ("accuracy@1", "accuracy@5")


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class DemoConfig:
    """The demo's settings; the defaults meet the documented figures on a 2-core CPU within 10 minutes."""

    output: str | None = _f(None, "run folder (default: ./cellst-demo, or -2, -3... if that exists)")
    model: str | None = _f(None, "hub id or folder of a pretrained CLIP; default: build a small one from scratch")
    preset: str = _f("small", "from-scratch model size: micro, small or base")
    images: int = _f(900, "synthetic images to draw")
    size: int = _f(96, "image size in pixels")
    seed: int = _f(0, "seed for the data, the model and training")
    epochs: float = _f(8.0, "training epochs")
    batch_size: int = _f(32, "batch size")
    learning_rate: float | None = _f(None, "default 5e-4 from scratch, 1e-5 for a pretrained --model")
    augment: bool = _f(True, "turn and mirror training images as they load (a cell on a slide has no up or down)")
    overwrite: bool = _f(False, "replace an earlier demo in --output")


def demo(config: DemoConfig | None = None, **kwargs) -> dict:
    """Run the demo; return ``{"output", "seconds", "figures"}``.

    Example::

        from cellst.demo import demo
        result = demo(images=300, epochs=3)
    """
    from .prepare_split import check_out_dir
    from .scratch import init_model
    from .synth import make_demo_data
    from .training import finetune

    cfg = config or DemoConfig(**kwargs)
    out = _output(cfg)
    check_out_dir(out, cfg.overwrite)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    print(f"1/4 Drawing {cfg.images} synthetic blood-smear cells ({cfg.size} px) into {out / 'data'}")
    data = make_demo_data(out / "data", cfg.images, cfg.seed, cfg.size, overwrite=cfg.overwrite)
    seconds["data"] = _lap(start)

    model = cfg.model
    if model is None:
        print(f"2/4 Building a '{cfg.preset}' CLIP from scratch, tokenizer trained on the training captions")
        import pandas as pd

        captions = pd.read_csv(data / "train_split.csv")["caption"].tolist()
        model = str(init_model(out / "initial_model", cfg.preset, captions, seed=cfg.seed, overwrite=cfg.overwrite))
    else:
        print(f"2/4 Using the pretrained CLIP {model}")
    seconds["model"] = _lap(start, seconds)

    print("3/4 Measuring the test split, fine-tuning with MNRL, measuring again")
    lr = cfg.learning_rate or (5e-4 if cfg.model is None else 1e-5)
    run = finetune(model=model, train=str(data / "train_split.csv"), val=str(data / "val_split.csv"),
                   test=str(data / "test_split.csv"), output=str(out / "run"), loss="mnrl", epochs=cfg.epochs,
                   batch_size=cfg.batch_size, learning_rate=lr, seed=cfg.seed, class_column="cell_type",
                   zero_shot_template=ZERO_SHOT_TEMPLATE, overwrite=cfg.overwrite,
                   augment=cfg.augment, augment_angle=0.0,  # right-angle turns and mirrors only: exact, and cheap
                   best_metric="/".join(HEADLINE))
    seconds["fine-tune, evaluate and report"] = _lap(start, seconds)

    figures = headline_figures(json.loads((run["output"] / "metrics.json").read_text()))
    summary = {"output": str(out), "model": model, "seconds": seconds, "finetune_seconds": run["seconds"],
               "figures": figures}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print("4/4 Done.\n" + format_summary(out, run["output"], seconds, figures))
    return summary


def headline_figures(metrics: dict) -> dict:
    """Zero-shot cell-type accuracy and caption-level text->image accuracy@1 and @5, before and after, with chance."""
    direction, rule, scope, _ = HEADLINE
    out = {}
    for stage in ("before", "after"):
        [record] = [r for r in metrics[stage] if (r["direction"], r["rule"], r["scope"]) == (direction, rule, scope)]
        for metric in CAPTION_KS:
            out[f"caption_{metric}_{stage}"] = record["metrics"][metric]
            out[f"caption_{metric}_chance"] = record["chance"][metric]
        shot = (metrics.get("zero_shot") or {}).get(stage)
        if shot:
            out[f"zero_shot_{stage}"] = shot["accuracy"]
            out["zero_shot_chance"] = shot["chance"]
    return out


def format_summary(out: Path, run: Path, seconds: dict, f: dict) -> str:
    lines = [f"  run folder:  {run}  (the fine-tuned model; SentenceTransformer('{run}') loads it)",
             f"  metrics:     {run / 'metrics.json'}",
             f"  report:      {run / 'report.html'}  and {run / 'report.md'}",
             f"  pictures:    {run / 'figures'}",
             f"  data:        {out / 'data'}  (images, attributes.csv, splits)",
             "  time:        " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) +
             f" (total {sum(seconds.values()):.0f} s)", "",
             f"  {'held-out test split':<46} {'before':>8} {'after':>8} {'chance':>8}"]
    if "zero_shot_after" in f:
        lines.append(f"  {'cell-type zero-shot accuracy':<46} {f['zero_shot_before']:>8.3f} {f['zero_shot_after']:>8.3f}"
                     f" {f['zero_shot_chance']:>8.3f}")
    for metric in CAPTION_KS:
        name = f"caption_{metric}"
        lines.append(f"  {'caption-level text->image ' + metric:<46} {f[name + '_before']:>8.3f} "
                     f"{f[name + '_after']:>8.3f} {f[name + '_chance']:>8.3f}")
    return "\n".join(lines)


def _output(cfg: DemoConfig) -> Path:
    """The given folder, or the first free ./cellst-demo[-N]: a second `cellst demo` never touches the first."""
    if cfg.output:
        return Path(cfg.output)
    for n in range(1, 1000):
        candidate = Path("cellst-demo" if n == 1 else f"cellst-demo-{n}")
        if not candidate.exists() or not any(candidate.iterdir()):
            return candidate
    raise CellstError("Could not find a free cellst-demo-N folder here; pass --output.")


def _lap(start: float, seconds: dict | None = None) -> float:
    return round(time.perf_counter() - start - sum((seconds or {}).values()), 1)
