"""``finetune``: thesis-format splits in, a fine-tuned and evaluated CLIP out.

The job reads as numbered steps: output folder, data, model, loss, evaluator, arguments, before, train, after, save,
publish. Training itself is sentence-transformers' ``SentenceTransformerTrainer`` (accelerate underneath), so mixed
precision, several GPUs, trackers and checkpoints behave as they do there.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from . import distributed
from .augment import augment_dataset, augment_options
from .config import FinetuneConfig
from .data import Columns, load_splits
from .data_checks import check_batch_size, warn_long_captions
from .errors import CellstError
from .evaluation import SplitRecallEvaluator, encode_split, format_table, score_split
from .freeze import choose_trainable
from .image_pairs import start as start_pairs
from .losses import LossOptions, get_loss
from .mining import mined_view
from .pairs import dataset_view, no_duplicates_by_path, warn_small_caption_pool

log = logging.getLogger("cellst")
RUN_MARKER = "cellst_config.yaml"  # a folder holding this file was written by cellst and may be overwritten on request


def finetune(config: FinetuneConfig | None = None, **kwargs) -> dict:
    """Fine-tune a CLIP on CSV splits; return ``{"output": Path, "metrics": dict, "seconds": {...}}``.

    Example::

        from cellst import finetune
        run = finetune(model="openai/clip-vit-base-patch32", train="data/train_split.csv",
                       val="data/val_split.csv", test="data/test_split.csv", output="runs/mnrl", loss="mnrl")
        print(run["metrics"]["after"][0]["metrics"]["recall@5"])
    """
    cfg = config or FinetuneConfig(**kwargs)
    if cfg.resume:
        from .resume import resumed_config

        cfg = resumed_config(cfg)  # the run folder's saved configuration; contradicting options fail
    cfg = cfg.validate()
    cfg, image_job = start_pairs(cfg)  # --pairs image-image: data, val evaluator, test figures (cellst.image_pairs)
    spec = get_loss(cfg.loss)
    clock = _Clock()

    # 1. Output folder: never replace what the user has, unless asked and it is a cellst run; --resume continues it
    #    from its newest complete checkpoint. Under torchrun or accelerate launch only the main process writes the run
    #    folder; the others wait until it is ready. Trainer arguments are checked first, so a mistyped one fails
    #    before anything is read or written (the metric name only needs to exist for the strategy checks).
    distributed.start(cfg.training.get("ddp_backend"))
    out = Path(cfg.output)
    training_arguments(cfg, spec, out, bool(cfg.val), "val_primary_metric", True)
    checkpoint = cfg.training.get("resume_from_checkpoint")
    if cfg.resume:
        from .resume import latest_checkpoint

        checkpoint = str(latest_checkpoint(out))
    if distributed.is_main():
        out = prepare_output(out, cfg.overwrite, resume=bool(checkpoint))
        if not cfg.resume:
            _write_config(out, cfg)
    distributed.barrier()

    # 2. Data: read, check every image, refuse leakage; all before any model is loaded.
    columns = Columns(cfg.image_column, cfg.caption_column, cfg.label_column, cfg.descriptor_column, cfg.value_column,
                      klass=image_job.class_column if image_job else None)
    splits = load_splits({"train": cfg.train, "val": cfg.val, "test": cfg.test}, columns, cfg.image_root,
                         float_labels=spec.float_labels, allow_leakage=cfg.allow_leakage,
                         allow_outside_root=cfg.allow_outside_root)
    options = LossOptions(cfg.symmetric, cfg.scale, cfg.margin, cfg.hard_negatives, cfg.mini_batch_size,
                          cfg.mask_known_positives)
    view = spec.view(options)
    known = None
    if spec.masks_known_positives(options):
        from .masked_mnrl import KnownPositives

        known = KnownPositives([splits[s] for s in ("train", "val") if s in splits])
    if image_job:  # pairs of images of one class / of two classes replace the caption rows
        train_ds, val_ds = image_job.datasets(splits, out / ".cache")
    else:
        train_ds = dataset_view(splits["train"], view, out / ".cache", cfg.seed, known)
        val_ds = dataset_view(splits["val"], view, out / ".cache", cfg.seed, known) if "val" in splits else None
    check_batch_size(len(train_ds), cfg.batch_size)
    if spec.in_batch_negatives:
        warn_small_caption_pool(splits["train"], cfg.batch_size)
    clock.lap("data")

    # 3. Model and loss.
    from .model import load_model

    model = load_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
    warn_long_captions(splits, model)  # truncated to the model's context, in training and evaluation alike
    trainable = choose_trainable(model, cfg)  # --freeze, --unfreeze-last, --lora
    if cfg.mine_negatives:  # mined with the starting model, so after loading it
        train_ds = mined_view(model, splits["train"], cfg.mine_negatives, out / ".cache", known, cfg.eval_batch_size)
    if cfg.augment:
        train_ds = augment_dataset(train_ds, augment_options(cfg), cfg.seed)
    loss = spec.build(model, options, known)
    clock.lap("load model")

    # 4. Evaluator on val (each epoch) and the test figures before training.
    evaluator = image_job.evaluator if image_job else \
        SplitRecallEvaluator(splits["val"], "val", cfg.best_metric, cfg.eval_batch_size) if val_ds else None
    metrics = {"schema": "cellst.metrics/1", "model": cfg.model, "loss": cfg.loss, "before": [], "after": []}
    metrics.update(trainable=trainable, processes=distributed.world_size())
    if "test" in splits and distributed.is_main():
        metrics["before"] = _test_records(model, splits["test"], cfg)
        print("Test split before training:\n" + format_table(metrics["before"], per_descriptor=False))
        if image_job:
            image_job.measure(model, splits, "before", metrics)
    clock.lap("evaluate before")

    # 5. Train.
    trainer = _trainer(cfg, spec, model, loss, train_ds, val_ds, evaluator, out, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    clock.lap("train")

    # 6. Test figures after training (the best checkpoint when keep_best), save, publish: the main process's job.
    if not distributed.is_main():
        return {"output": out, "metrics": metrics, "seconds": clock.laps}
    if "test" in splits:
        metrics["after"] = _test_records(model, splits["test"], cfg)
        print("Test split after training:\n" + format_table(metrics["after"], per_descriptor=False))
        if image_job:
            image_job.measure(model, splits, "after", metrics)  # and draws figures/image_similarity.png
    clock.lap("evaluate after")
    metrics["val_history"] = evaluator.history if evaluator else []
    metrics["seconds"] = clock.laps
    save_run(model, out, metrics, trainer.state.log_history, cfg)
    from .report import write_report

    # Before the push, so the report travels with the model.
    write_report(out, model=model, class_column=cfg.class_column, template=cfg.zero_shot_template)
    clock.lap("report")
    if cfg.push_to_hub:
        from .hub import push

        push(out, cfg.push_to_hub, private=cfg.private)
    return {"output": out, "metrics": metrics, "seconds": clock.laps}


def prepare_output(out: Path, overwrite: bool, resume: bool = False) -> Path:
    """Create ``out``; a non-empty folder is an error unless ``overwrite`` and it holds an earlier cellst run."""
    if out.exists() and not out.is_dir():
        raise CellstError(f"--output {out} is a file; give a folder for the run.")
    # A folder holding only the config (and the image cache) is a start that failed on its input before training:
    # nothing there is worth keeping, and the same command should work once the input is fixed.
    aborted = out.is_dir() and {p.name for p in out.iterdir()} <= {RUN_MARKER, ".cache"}
    if out.is_dir() and any(out.iterdir()) and not resume and not aborted:
        if not overwrite:
            raise CellstError(f"Output folder {out} exists and is not empty; cellst never overwrites a run. "
                              "Choose a new --output, or pass --overwrite to replace an earlier cellst run there.")
        if not (out / RUN_MARKER).exists():
            raise CellstError(f"--overwrite refused: {out} does not look like a cellst run (no {RUN_MARKER}), so "
                              "it may hold your own files. Choose an empty or new folder.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _test_records(model, frame, cfg: FinetuneConfig) -> list[dict]:
    img, txt = encode_split(model, frame, cfg.eval_batch_size, progress=False)
    return score_split(frame, img, txt, "test", rules=cfg.rule_list)


def training_arguments(cfg: FinetuneConfig, spec, out: Path, has_val: bool, primary: str | None, higher: bool):
    """``SentenceTransformerTrainingArguments`` from the config; ``cfg.training`` overrides anything set here."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    evaluate_epochs = has_val and cfg.eval_each_epoch
    args = dict(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # transformers 5 reads a float below 1 as a ratio of the optimiser steps
        weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed, **_precision(cfg.precision),
        # Template captions repeat; a duplicate caption in an MNRL batch would be a false negative. The hashed
        # no-duplicates sampler compares rows once per run; cellst's variant hashes image paths, not pixels.
        batch_sampler=no_duplicates_by_path if spec.in_batch_negatives else BatchSamplers.BATCH_SAMPLER,
        eval_strategy="epoch" if evaluate_epochs else "no", save_strategy="epoch", save_total_limit=2,
        load_best_model_at_end=bool(evaluate_epochs and cfg.keep_best and primary),
        metric_for_best_model=primary if evaluate_epochs else None, greater_is_better=higher,
        logging_strategy="steps", logging_steps=10, logging_first_step=True,
        report_to=[r.strip() for r in cfg.report_to.split(",")] if cfg.report_to != "none" else "none",
        dataloader_drop_last=False, dataloader_pin_memory=_has_gpu(),
    )
    if distributed.world_size() > 1:
        # The losses run the model once per column (images, then captions) and each pass uses one tower only: DDP's
        # search for unused parameters would mark the other tower ready after each pass, twice in all, and fail.
        # GradCache (mini batches) is the opposite: it synchronises on its last mini-batch, a caption one, so the
        # search must be on for the image tower's gradients, accumulated without sync, to be reduced too.
        args["ddp_find_unused_parameters"] = bool(cfg.mini_batch_size and spec.in_batch_negatives)
        args["use_cpu"] = distributed.cpu_flag()  # no GPU: DDP over gloo rather than independent processes
    args.update({k: v for k, v in cfg.training.items() if k != "resume_from_checkpoint"})
    try:
        return SentenceTransformerTrainingArguments(**args)
    except (TypeError, ValueError) as exc:
        raise CellstError(f"Invalid training arguments: {exc}") from None


def _trainer(cfg, spec, model, loss, train_ds, val_ds, evaluator, out: Path, checkpoint=None):
    from sentence_transformers import SentenceTransformerTrainer

    primary = evaluator.primary_metric if evaluator else None
    args = training_arguments(cfg, spec, out, val_ds is not None, primary,
                              evaluator.greater_is_better if evaluator else True)
    callbacks = _callbacks(cfg, evaluator, out, checkpoint)
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                                      loss=loss, evaluator=evaluator, callbacks=callbacks,
                                      data_collator=_collator(model, args))


def _collator(model, args):
    """The trainer's own collator, with cellst's faster image preprocessing (identical pixels, see fast_images)."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    from .fast_images import CollatorPreprocess

    return SentenceTransformerDataCollator(preprocess_fn=CollatorPreprocess(model), router_mapping=args.router_mapping,
                                           prompts=args.prompts)


def _callbacks(cfg, evaluator=None, out: Path | None = None, checkpoint=None) -> list:
    from transformers import EarlyStoppingCallback

    from .resume import NoPickledArgs, ValHistory

    callbacks = [NoPickledArgs()]  # checkpoints without the trainer's pickled arguments
    if evaluator is not None and out is not None:
        callbacks.append(ValHistory(evaluator, out / "checkpoints", checkpoint))  # val figures survive a stop
    if cfg.early_stopping_patience:
        # Watches the trainer's metric_for_best_model, which is cfg.best_metric on val (validate() requires val).
        callbacks.append(EarlyStoppingCallback(cfg.early_stopping_patience))
    return callbacks


def save_run(model, out: Path, metrics: dict, log_history: list, cfg: FinetuneConfig) -> None:
    """Write the model (safetensors, loadable by SentenceTransformer and CLIPModel), metrics, logs and card."""
    from .hub import write_model_card

    model.save_pretrained(str(out), safe_serialization=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(out / "trainer_log.jsonl", "w") as fh:
        for entry in log_history:
            fh.write(json.dumps(entry) + "\n")
    write_model_card(out, metrics)
    shutil.rmtree(out / ".cache", ignore_errors=True)


def _write_config(out: Path, cfg: FinetuneConfig) -> None:
    import yaml

    (out / RUN_MARKER).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _precision(precision: str) -> dict:
    import torch

    if precision == "auto":
        if _has_gpu():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    return {"fp16": precision == "fp16", "bf16": precision == "bf16"}


class _Clock:
    def __init__(self):
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 2)
        self._t = now
