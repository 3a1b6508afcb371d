"""The fine-tuning job's configuration: one dataclass, documented once per field.

The CLI's ``cellst finetune`` flags are generated from :class:`FinetuneConfig` (``--batch-size`` for ``batch_size``), a
YAML file given with ``--config`` may hold any field, and ``training`` passes any
``SentenceTransformerTrainingArguments`` field through untouched (``--gradient_accumulation_steps 4`` on the command
line, or a ``training:`` mapping in YAML). Precedence: defaults < YAML < command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CellstError


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class FinetuneConfig:
    """Everything one ``cellst finetune`` run needs. Only ``model``, ``train`` and ``output`` are required."""

    model: str = _f("", "hub id (openai/clip-vit-base-patch32) or local folder of the CLIP to fine-tune")
    train: str = _f("", "training split CSV (image_path, caption, similarity[, descriptor])")
    output: str = _f("", "run folder to write: the model, metrics.json, config and logs")
    val: str | None = _f(None, "validation split CSV, evaluated each epoch")
    test: str | None = _f(None, "test split CSV, evaluated before and after training")
    loss: str = _f("mnrl", "loss from the registry (cellst.losses.LOSSES)")
    pairs: str = _f("image-text", "what trains: image-text (the caption rows), or image-image (pairs of images of one "
                                  "class / two classes, from --class-column; needs --loss cosine or contrastive)")
    pairs_per_image: int = _f(2, "image-image: same-class partners drawn per image (positive pairs)")
    negative_ratio: float = _f(1.0, "image-image: different-class pairs per same-class pair")
    image_root: str | None = _f(None, "folder image paths are relative to (default: each CSV's folder)")
    image_column: str = _f("image_path", "CSV column with image paths")
    caption_column: str = _f("caption", "CSV column with captions")
    label_column: str = _f("similarity", "CSV column with 1 (caption describes the image) / 0 labels")
    descriptor_column: str = _f("descriptor", "CSV column naming the descriptor a caption is about")
    value_column: str = _f("value", "CSV column with the descriptor value a caption states (optional; makes other "
                                    "phrasings of an image's values count as true of it)")
    class_column: str | None = _f(None, "CSV column with the cell type, for zero-shot accuracy in the report and "
                                        "image-image pairs (default: 'class' or 'cell_type' when present)")
    zero_shot_template: str = _f("a microscopy image of a {class} cell.",
                                 "caption asked of each class for zero-shot accuracy; {class} is the class name")
    allow_leakage: bool = _f(False, "allow an image to appear in more than one split")
    allow_outside_root: bool = _f(False, "read image paths that leave the image root (../, absolute paths "
                                         "elsewhere); off so that a CSV from elsewhere cannot make cellst read other "
                                         "files")
    epochs: float = _f(3.0, "training epochs")
    batch_size: int = _f(32, "batch size per device")
    learning_rate: float = _f(1e-5, "peak learning rate (pretrained CLIPs like 1e-5..5e-5; from scratch 5e-4)")
    warmup_ratio: float = _f(0.1, "fraction of optimiser steps spent warming up the learning rate")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    seed: int = _f(42, "random seed for data order and initialisation")
    precision: str = _f("auto", "fp32, fp16, bf16, or auto (bf16/fp16 on a GPU that supports it, else fp32)",
                        choices=("auto", "fp32", "fp16", "bf16"))
    eval_each_epoch: bool = _f(True, "evaluate on the val split at the end of each epoch")
    best_metric: str = _f("text_to_image/pair/non-specific/recall@5",
                          "val figure that picks the best checkpoint: direction/rule/scope/metric")
    keep_best: bool = _f(True, "load the best checkpoint by best_metric at the end (needs val)")
    report_to: str = _f("none", "experiment trackers: none, wandb, tensorboard, or a comma-separated list")
    symmetric: bool = _f(True, "mnrl: train image->text as well as text->image")
    scale: float = _f(20.0, "mnrl: similarity scale (inverse temperature)")
    margin: float = _f(0.5, "contrastive: margin for negative pairs")
    hard_negatives: bool = _f(False, "mnrl: add each image's negative caption as a hard negative")
    mini_batch_size: int | None = _f(None, "mnrl: GradCache chunk size, for large batches in small memory")
    mask_known_positives: bool = _f(True, "mnrl: never use a caption the split marks true of an image as that "
                                        "image's in-batch negative (shared template captions)")
    eval_batch_size: int = _f(64, "batch size for encoding during evaluation")
    rules: str = _f("pair,caption", "relevance rules to report: pair, caption")
    overwrite: bool = _f(False, "replace a non-empty output folder")
    resume: bool = _f(False, "continue the stopped run in --output from its newest complete checkpoint, with the "
                             "configuration saved there (options given again must match it)")
    push_to_hub: str | None = _f(None, "after training, push the model to this hub repo (user/name)")
    private: bool = _f(False, "make the hub repo private")
    trust_remote_code: bool = _f(False, "allow the model's own code to run when loading (only for models you trust)")
    # Which weights train (cellst.freeze, cellst.lora).
    freeze: str | None = _f(None, "freeze a tower and its projection: vision or text", choices=("vision", "text"))
    unfreeze_last: int = _f(0, "with --freeze: still train the frozen tower's last N encoder layers and the final "
                               "layer norm and projection above them")
    lora: bool = _f(False, "train LoRA adapters (needs peft: pip install 'cellst[lora]'); the run saves the adapter")
    lora_rank: int = _f(8, "LoRA rank")
    lora_alpha: int = _f(16, "LoRA alpha; adapter updates are scaled by alpha / rank")
    lora_targets: str = _f("q_proj,k_proj,v_proj,out_proj", "comma-separated module names that get LoRA adapters")
    # Data: mined negatives and image augmentation (cellst.mining, cellst.augment).
    mine_negatives: int = _f(0, "mnrl: mine K hard-negative captions per training pair with the starting model "
                                "(one row per negative; 0 = off)")
    augment: bool = _f(False, "augment training images as they load: 90-degree rotations, flips, small rotations")
    augment_angle: float = _f(10.0, "with --augment: largest extra rotation in degrees (0 = only 90-degree turns)")
    augment_crop: float = _f(0.0, "with --augment: random crop keeping at least this fraction of each side (0 = off, "
                                  "e.g. 0.8)")
    augment_color: float = _f(0.0, "with --augment: brightness/contrast/saturation jitter strength (0 = off, e.g. 0.2)")
    augment_stain: float = _f(0.0, "with --augment: H&E stain jitter strength in optical-density space (0 = off, "
                                   "e.g. 0.05)")
    early_stopping_patience: int = _f(0, "stop when best_metric has not improved for N evaluations (needs --val; "
                                         "0 = off)")
    training: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "extra SentenceTransformerTrainingArguments fields, passed through", "cli": False})

    def validate(self) -> "FinetuneConfig":
        from .losses import LOSSES

        for name in ("model", "train", "output"):
            if not getattr(self, name):
                raise CellstError(f"finetune needs --{name}. See `cellst finetune --help`.")
        if self.loss not in LOSSES:
            raise CellstError(f"Unknown loss '{self.loss}'. Expected one of: {', '.join(LOSSES)}.")
        for rule in self.rule_list:
            if rule not in ("pair", "caption"):
                raise CellstError(f"Unknown relevance rule '{rule}' in --rules. Expected pair and/or caption.")
        if self.batch_size < 2 and LOSSES[self.loss].in_batch_negatives:
            raise CellstError(f"--batch-size {self.batch_size} leaves MNRL no in-batch negatives; use 2 or more.")
        if self.resume and self.overwrite:
            raise CellstError("--resume continues the run in --output and --overwrite replaces it; choose one.")
        self._check_weights()
        self._check_data_options()
        from .image_pairs import check_config as check_pairs

        check_pairs(self)
        return self

    def _check_weights(self) -> None:
        if self.unfreeze_last < 0 or (self.unfreeze_last and not self.freeze):
            raise CellstError(f"--unfreeze-last {self.unfreeze_last} applies to a frozen tower: add --freeze vision "
                              "or --freeze text, or drop --unfreeze-last.")
        if self.lora and self.unfreeze_last:
            raise CellstError("--unfreeze-last trains full layers, which a LoRA run does not save (it saves only the "
                              "adapter). With --lora, --freeze alone keeps adapters out of the frozen tower.")
        if self.lora and (self.lora_rank < 1 or self.lora_alpha <= 0):
            raise CellstError(f"--lora-rank ({self.lora_rank}) and --lora-alpha ({self.lora_alpha}) must be positive.")

    def _check_data_options(self) -> None:
        from .losses import LOSSES

        if self.mine_negatives and not LOSSES[self.loss].in_batch_negatives:
            raise CellstError(f"--mine-negatives needs a loss that ranks captions (mnrl), not '{self.loss}'.")
        if self.mine_negatives and self.hard_negatives:
            raise CellstError("--mine-negatives and --hard-negatives both add a negative column; choose one.")
        if self.mine_negatives < 0:
            raise CellstError(f"--mine-negatives must be 0 (off) or a positive count, not {self.mine_negatives}.")
        if not 0 <= self.augment_crop <= 1 or self.augment_color < 0 or self.augment_stain < 0:
            raise CellstError("--augment-crop must lie in [0, 1] and --augment-color/--augment-stain be >= 0.")
        if self.early_stopping_patience and not (self.val and self.eval_each_epoch):
            raise CellstError("--early-stopping-patience watches the val figures each epoch: give --val (and keep "
                              "--eval-each-epoch).")

    @property
    def rule_list(self) -> list[str]:
        return [r.strip() for r in self.rules.split(",") if r.strip()]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_fields() -> list[dataclasses.Field]:
    """The fields the CLI exposes as flags."""
    return [f for f in dataclasses.fields(FinetuneConfig) if f.metadata.get("cli", True)]


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config; keys may be FinetuneConfig fields or training-argument fields (sent to ``training``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CellstError(f"Config file not found: {path}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CellstError(f"{path} is not valid YAML: {exc}")
    if not isinstance(data, dict):
        raise CellstError(f"{path} must hold a mapping of option: value, found {type(data).__name__}.")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> FinetuneConfig:
    """Build a config from ``base`` (YAML) then ``override`` (command line); unknown keys go to training arguments
    when they name one, else raise with the closest valid name."""
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    training_fields = training_argument_names()
    values: dict[str, Any] = {"training": {}}
    for source in (base, override):
        for key, value in source.items():
            key = key.replace("-", "_")
            if key == "training":
                values["training"].update(value or {})
            elif key in known:
                values[key] = value
            elif key in training_fields:
                values["training"][key] = value
            else:
                import difflib

                close = difflib.get_close_matches(key, sorted(known | training_fields), n=1)
                raise CellstError(f"Unknown option '{key}'." + (f" Did you mean '{close[0]}'?" if close else ""))
    return FinetuneConfig(**values)


def training_argument_names() -> set[str]:
    from sentence_transformers import SentenceTransformerTrainingArguments

    return {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments) if f.init}
