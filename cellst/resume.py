"""Continuing a stopped ``cellst finetune`` run, and what its checkpoints hold.

What it is for: ``cellst finetune --output RUN --resume`` after a crash, a kill or a lost machine. The run folder's
``cellst_config.yaml`` gives the configuration (options given again must match it), the newest *complete* checkpoint
under ``RUN/checkpoints`` gives the model, optimiser, schedule, random states and the place in the data
(``SentenceTransformerTrainer``'s ``resume_from_checkpoint``), and the val figures of the epochs before the stop are
kept on disk so ``metrics.json`` lists every epoch. With the same seed on the same machine the resumed run ends with the
figures an uninterrupted run would have had. What it is not: a way to change a run's settings halfway.

Checkpoints hold the weights as safetensors. The trainer's optimiser, scheduler and random states (``optimizer.pt``,
``scheduler.pt``, ``rng_state.pth``) are ``torch.save`` files, which transformers reads back with
``torch.load(weights_only=True)`` (no arbitrary pickles); the pickled ``training_args.bin`` is removed, as nothing reads
it and ``cellst_config.yaml`` records the same settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from .errors import CellstError

# Fields that may differ between the first start and the resume: where the run is and what happens after it ends.
RUN_ONLY = {"output", "resume", "overwrite", "push_to_hub", "private"}
PICKLED_ARGS = "training_args.bin"


def resumed_config(cfg):
    """The configuration saved in ``cfg.output``, with what ``cfg`` sets; a value that contradicts the saved one fails.

    Options left at their defaults take the saved value, so ``finetune(output=RUN, resume=True)`` is enough.
    """
    import yaml

    from .config import FinetuneConfig
    from .training import RUN_MARKER

    out = Path(cfg.output)
    if not cfg.output or not (out / RUN_MARKER).is_file():
        raise CellstError(f"--resume continues an earlier `cellst finetune` run, but '{out}' holds no {RUN_MARKER}. "
                          "Give that run's folder as --output, or start a new run without --resume.")
    if (out / "metrics.json").exists():
        raise CellstError(f"The run in {out} has finished (it holds metrics.json), so there is nothing to resume. "
                          "Start a new run with another --output.")
    saved = yaml.safe_load((out / RUN_MARKER).read_text(encoding="utf-8")) or {}
    given, default = cfg.to_dict(), FinetuneConfig().to_dict()
    values, clashes = {}, []
    for name, value in given.items():
        if name in RUN_ONLY or name not in saved:
            values[name] = value
        elif name == "training":
            values[name] = {**(saved[name] or {}), **value}
            clashes += [f"--{k}: saved {(saved[name] or {}).get(k)!r}, given {v!r}" for k, v in value.items()
                        if k != "resume_from_checkpoint" and (saved[name] or {}).get(k) != v]
        elif value == default[name] or value == saved[name]:
            values[name] = saved[name]
        else:
            clashes.append(f"--{name.replace('_', '-')}: saved {saved[name]!r}, given {value!r}")
    if clashes:
        raise CellstError(f"--resume continues {out} with the configuration saved in {out / RUN_MARKER}, but these "
                          "options differ from it: " + "; ".join(clashes) + ". Drop them (the saved values are used), "
                          "or start a new run in another --output to change them.")
    return FinetuneConfig(**values)


def latest_checkpoint(run: str | Path) -> Path:
    """The newest complete checkpoint in ``run/checkpoints``; one being written when the run stopped is skipped."""
    folder = Path(run) / "checkpoints"
    found = sorted((p for p in folder.glob("checkpoint-*") if _step(p) is not None), key=_step, reverse=True)
    for checkpoint in found:
        if is_complete(checkpoint):
            skipped = [p.name for p in found if _step(p) > _step(checkpoint)]
            if skipped:
                print(f"Skipping {', '.join(skipped)}: incomplete (the run stopped while writing it).")
            print(f"Resuming from {checkpoint}")
            return checkpoint
    raise CellstError(f"--resume found no complete checkpoint in {folder}: the run stopped before its first one was "
                      "saved. Start it again with --overwrite instead of --resume, and save more often if runs are "
                      "often stopped (e.g. --save_strategy steps --save_steps 200).")


def is_complete(checkpoint: Path) -> bool:
    """The trainer writes ``trainer_state.json`` last, after the weights, optimiser and random states."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == _step(checkpoint) and any(checkpoint.glob("*.safetensors"))


def _step(checkpoint: Path) -> int | None:
    suffix = checkpoint.name.removeprefix("checkpoint-")
    return int(suffix) if suffix.isdigit() else None


class NoPickledArgs(TrainerCallback):
    """Deletes the trainer's ``training_args.bin`` (a pickle: loading it can run code) from each new checkpoint."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            (Path(args.output_dir) / f"checkpoint-{state.global_step}" / PICKLED_ARGS).unlink(missing_ok=True)


class ValHistory(TrainerCallback):
    """Keeps the evaluator's per-epoch val records in ``checkpoints/val_history.json``, so that a resumed run, whose
    evaluator starts empty, still reports the epochs before the stop (those up to its checkpoint's step)."""

    def __init__(self, evaluator, folder: Path, resumed_from: str | Path | None = None):
        self.evaluator, self.path = evaluator, Path(folder) / "val_history.json"
        if resumed_from is not None and self.path.is_file():
            step = _step(Path(resumed_from))
            kept = [e for e in json.loads(self.path.read_text()) if step is None or e["step"] <= step]
            evaluator.history[:0] = kept

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(self.evaluator.history))
            partial.replace(self.path)  # a kill mid-write leaves the previous history whole
