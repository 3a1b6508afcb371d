"""LoRA fine-tuning through PEFT: train small low-rank adapters instead of the CLIP's own weights.

What it is for: fine-tuning a large CLIP on little data or little memory. Only the adapters train (often under 1% of
the parameters) and the run folder holds just the adapter (``adapter_model.safetensors`` + ``adapter_config.json``)
beside the processor files; ``SentenceTransformer(run_dir)`` loads the base model named in the adapter config and
applies the adapter. :func:`merge_lora` folds the adapter into a full model folder that loads without PEFT (for
``CLIPModel.from_pretrained``, ``cellst interpolate`` or publishing).
What it is not: freezing (:mod:`cellst.freeze`); a frozen tower simply gets no adapters.

PEFT is optional (``pip install cellst[lora]``); it is imported only when LoRA is asked for.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .errors import CellstError
from .freeze import TOWERS, transformers_model

DEFAULT_TARGETS = "q_proj,k_proj,v_proj,out_proj"  # CLIP attention projections, in both towers


def require_peft():
    try:
        import peft
    except ImportError:
        raise CellstError("LoRA needs the PEFT library, which is not installed. Install it with "
                          "`pip install 'cellst[lora]'` (or `pip install peft`), then run again.") from None
    return peft


def add_lora(model, rank: int = 8, alpha: int = 16, targets: str = DEFAULT_TARGETS,
             towers: tuple[str, ...] = tuple(TOWERS), base: str | None = None) -> None:
    """Add a trainable LoRA adapter to ``targets`` (module names) in ``towers``; every other weight is frozen.

    ``base`` (the model's hub id or folder) is recorded in the adapter config, a local folder as an absolute path, so
    the saved adapter finds its base model from any working directory.
    """
    peft = require_peft()
    pattern = target_pattern(targets, towers)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern, lora_dropout=0.0, bias="none")
    try:
        model.add_adapter(config)
    except ValueError as exc:  # PEFT: no module matched the targets
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in transformers_model(model).named_modules() if "." in n})
        raise CellstError(f"--lora-targets {targets} matched no module of the {' and '.join(towers)} tower(s) "
                          f"({exc}). Module names in this model include: {', '.join(names[:30])}.") from None
    if base:
        local = Path(base).expanduser()
        transformers_model(model).peft_config["default"].base_model_name_or_path = \
            str(local.resolve()) if local.is_dir() else base


def target_pattern(targets: str, towers: tuple[str, ...]) -> str:
    """A PEFT ``target_modules`` regex (matched against full module names) limited to the given towers, so a frozen
    tower gets no adapters."""
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise CellstError("--lora-targets is empty; give module names such as q_proj,k_proj,v_proj,out_proj.")
    bodies = "|".join(re.escape(TOWERS[t].body) for t in towers)
    return rf"({bodies})\..*\.({'|'.join(map(re.escape, names))})"


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def merge_lora(run_dir: str | Path, output: str | Path, overwrite: bool = False) -> Path:
    """Fold the LoRA adapter of ``run_dir`` into its base model and save a full model folder to ``output``.

    The merged model gives the adapter model's embeddings (to float rounding), loads as ``SentenceTransformer`` and
    ``CLIPModel``, and keeps the run's ``metrics.json`` and model-card figures.

    Example::

        from cellst.lora import merge_lora
        merge_lora("runs/lora", "models/lora-merged")
    """
    run_dir, out = Path(run_dir), Path(output)
    if not is_adapter_folder(run_dir):
        raise CellstError(f"{run_dir} holds no LoRA adapter (no adapter_config.json). Give the --output folder of a "
                          "`cellst finetune --lora` run; runs without --lora already hold a full model.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CellstError(f"{out} exists and is not empty; choose a new folder or pass --overwrite.")
    peft = require_peft()
    model = _load_base(run_dir)
    merged = peft.PeftModel.from_pretrained(transformers_model(model), str(run_dir)).merge_and_unload()
    assert merged is transformers_model(model)  # PEFT merges in place, so the SentenceTransformer holds the result
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    _carry_metrics(run_dir, out)
    return out


def _load_base(run_dir: Path):
    from .model import load_model

    base = json.loads((run_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise CellstError(f"{run_dir / 'adapter_config.json'} names no base model (base_model_name_or_path).")
    try:
        return load_model(base)
    except CellstError as exc:
        raise CellstError(f"The adapter in {run_dir} was trained on '{base}', which cannot be loaded now: {exc} "
                          "Restore that model folder (or fix base_model_name_or_path in adapter_config.json).") \
            from None


def _carry_metrics(run_dir: Path, out: Path) -> None:
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        from .hub import write_model_card

        shutil.copy2(metrics, out / "metrics.json")
        write_model_card(out, json.loads(metrics.read_text()))
