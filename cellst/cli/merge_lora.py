"""``cellst merge-lora``: fold a LoRA run's adapter into a full model folder (see :func:`cellst.lora.merge_lora`)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("merge-lora", help="merge a `finetune --lora` run's adapter into a full model folder",
                       description="Fold the LoRA adapter of a run folder into its base model and write a full model "
                                   "that loads without PEFT (SentenceTransformer or CLIPModel).")
    p.add_argument("run_dir", help="output folder of a `cellst finetune --lora` run")
    p.add_argument("output", help="folder to write the merged model to")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..lora import merge_lora

    out = merge_lora(args.run_dir, args.output, overwrite=args.overwrite)
    print(f"Merged model written to {out}; use it as --model, or with `cellst evaluate --model {out}`.")
    return 0
