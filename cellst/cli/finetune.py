"""``cellst finetune``: CSV splits to a fine-tuned, evaluated CLIP (see :func:`cellst.training.finetune`)."""

from __future__ import annotations

from ._args import add_dataclass_flags, given, parse_training_args


def register(sub) -> None:
    from ..config import config_fields
    from ..image_pairs import PAIRS
    from ..losses import LOSSES

    p = sub.add_parser("finetune", help="fine-tune a CLIP on thesis-format CSV splits",
                       description="Fine-tune a CLIP on train/val/test CSV splits and report recall before and after. "
                                   "Any SentenceTransformerTrainingArguments field may be given too, e.g. "
                                   "--gradient_accumulation_steps 4 --lr_scheduler_type cosine.")
    p.add_argument("--config", help="YAML file with any of these options (and training arguments); flags override it")
    add_dataclass_flags(p, [f for f in config_fields() if f.name not in ("loss", "pairs")])
    p.add_argument("--loss", choices=sorted(LOSSES), default=None, help="loss (default: mnrl)")
    p.add_argument("--pairs", choices=list(PAIRS), default=None,
                   help="what trains: " + "; ".join(f"{k}: {v.summary}" for k, v in PAIRS.items()) +
                        " (default: image-text)")
    p.set_defaults(run=run, accepts_extra=True)


def run(args) -> int:
    from ..config import config_fields, load_yaml, merge
    from ..training import finetune

    base = load_yaml(args.config) if args.config else {}
    cli = given(args, config_fields())
    training = parse_training_args(args.extra)
    if args.loss:
        cli["loss"] = args.loss
    cfg = merge(base, {**cli, "training": {**base.get("training", {}), **training}} if training else cli)
    result = finetune(cfg)
    print(f"\nRun folder: {result['output']}")
    print(f"  model:        {result['output']} (SentenceTransformer or CLIPModel .from_pretrained)")
    print(f"  metrics.json: {result['output'] / 'metrics.json'}")
    print("  seconds:      " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    return 0
