"""Weight-space ensembling (WiSE-FT): blend a fine-tuned CLIP with the model it started from.

What it is for: fine-tuning on a small cell dataset gains in-domain recall but can lose what the pretrained model knew.
Wortsman et al. (2022) showed that the straight line between the two weight sets, ``theta = (1 - alpha) * base +
alpha * tuned``, often keeps most of the gain and most of the old knowledge at alpha around 0.5. :func:`sweep` measures
the split figures along that line so the choice of alpha is made on data.
What it is not: an ensemble of predictions, or a merge of unrelated models; both folders must hold the same
architecture (same tensor names and shapes), as a fine-tuned run and its base do.

Weights are read from the folders' safetensors files; LoRA runs hold only an adapter, so merge them first
(``cellst merge-lora``).
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

from .errors import CellstError

# Files that describe the model (configs, processor, tokenizer) and are copied beside the blended weights.
MODEL_FILES = ("config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
               "processor_config.json", "preprocessor_config.json", "tokenizer*", "special_tokens_map.json",
               "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json", "chat_template*")
DEFAULT_FIGURES = ("text_to_image/pair/non-specific/recall@5", "text_to_image/pair/specific/recall@5",
                   "image_to_text/pair/non-specific/recall@5", "text_to_image/caption/non-specific/accuracy@1")


def read_weights(folder: str | Path) -> dict:
    """All tensors of a model folder (``model.safetensors`` or its shards), by name."""
    from safetensors.torch import load_file

    folder = _local(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    elif (folder / "adapter_config.json").exists():
        raise CellstError(f"{folder} is a LoRA run (an adapter, not full weights). Merge it first: "
                          f"`cellst merge-lora {folder} MERGED_DIR`, then interpolate with MERGED_DIR.")
    else:
        raise CellstError(f"{folder} holds no model.safetensors; give a model folder or a finished run folder.")
    weights = {}
    for name in files:
        weights.update(load_file(str(folder / name)))
    return weights


def blend(base: dict, tuned: dict, alpha: float) -> dict:
    """``(1 - alpha) * base + alpha * tuned`` for every floating-point tensor; integer buffers must agree."""
    check_same_architecture(base, tuned)
    out = {}
    for name, t in tuned.items():
        b = base[name]
        if t.is_floating_point():
            out[name] = ((1 - alpha) * b.float() + alpha * t.float()).to(t.dtype)
        else:
            out[name] = t  # e.g. position ids: equal in both (checked shapes), nothing to blend
    return out


def check_same_architecture(base: dict, tuned: dict) -> None:
    missing, extra = sorted(set(tuned) - set(base)), sorted(set(base) - set(tuned))
    shapes = [n for n in tuned if n in base and tuple(base[n].shape) != tuple(tuned[n].shape)]
    if missing or extra or shapes:
        detail = "; ".join(part for part in (
            f"only in the tuned model: {', '.join(missing[:5])}" if missing else "",
            f"only in the base model: {', '.join(extra[:5])}" if extra else "",
            "different shapes: " + ", ".join(f"{n} {tuple(base[n].shape)} vs {tuple(tuned[n].shape)}"
                                             for n in shapes[:5]) if shapes else "") if part)
        raise CellstError(f"The base and tuned models differ in architecture ({detail}). Interpolation needs the "
                          "model a run started from (its --model) and that run's output folder.")


def interpolate(base: str | Path, tuned: str | Path, alpha: float, output: str | Path,
                overwrite: bool = False) -> Path:
    """Write the blended model to ``output``: tuned's config and processor files, blended ``model.safetensors``.

    Example::

        from cellst.interpolate import interpolate
        interpolate("openai/clip-vit-base-patch32", "runs/mnrl", alpha=0.5, output="models/wise-0.5")
    """
    from safetensors.torch import save_file

    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CellstError(f"{out} exists and is not empty; choose a new --out folder or pass --overwrite.")
    weights = blend(read_weights(base), read_weights(tuned), alpha)
    out.mkdir(parents=True, exist_ok=True)
    _copy_model_files(_local(tuned), out)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"), {"format": "pt"})
    (out / "README.md").write_text(f"# WiSE-FT blend\n\ntheta = {1 - alpha:g} * `{base}` + {alpha:g} * `{tuned}` "
                                   "(made with `cellst interpolate`).\n", encoding="utf-8")
    return out


def sweep(base: str | Path, tuned: str | Path, split, alphas=(0.0, 0.25, 0.5, 0.75, 1.0), batch_size: int = 64,
          **evaluate_kwargs) -> list[dict]:
    """Evaluate the blend at each alpha on ``split`` (a CSV or frame); return ``[{"alpha", "records"}, ...]``."""
    from .evaluation import evaluate
    from .freeze import transformers_model
    from .model import load_model

    base_w, tuned_w = read_weights(base), read_weights(tuned)
    check_same_architecture(base_w, tuned_w)
    model = load_model(_local(tuned))
    results = []
    for alpha in alphas:
        transformers_model(model).load_state_dict(blend(base_w, tuned_w, alpha), strict=True)
        records = evaluate(model, split, batch_size=batch_size, progress=False, **evaluate_kwargs)
        results.append({"alpha": float(alpha), "records": records})
    return results


def format_sweep(results: list[dict], figures=DEFAULT_FIGURES) -> str:
    """One line per alpha, one column per ``direction/rule/scope/metric`` figure ('-' where the split has none)."""
    head = f"{'alpha':>6}  " + "  ".join(f"{f:>{max(len(f), 8)}}" for f in figures)
    lines = [head, "-" * len(head)]
    for result in results:
        cells = []
        for figure in figures:
            direction, rule, scope, metric = figure.split("/")
            value = next((r["metrics"].get(metric) for r in result["records"] if
                          (r["direction"], r["rule"], r["scope"]) == (direction, rule, scope)), None)
            cells.append(f"{value:>{max(len(figure), 8)}.4f}" if value is not None else f"{'-':>{max(len(figure), 8)}}")
        lines.append(f"{result['alpha']:>6.2f}  " + "  ".join(cells))
    return "\n".join(lines)


def _local(name: str | Path) -> Path:
    """A local folder, or a hub id's snapshot (weights and configs only)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), allow_patterns=["*.safetensors", "*.json", "*.txt"]))
    except Exception as exc:
        raise CellstError(f"'{name}' is neither a local model folder nor a hub id that could be fetched "
                          f"({type(exc).__name__}: {exc}).") from None


def _copy_model_files(source: Path, out: Path) -> None:
    modules = json.loads((source / "modules.json").read_text()) if (source / "modules.json").exists() else []
    for item in source.iterdir():
        if item.is_file() and any(fnmatch.fnmatch(item.name, p) for p in MODEL_FILES):
            shutil.copy2(item, out / item.name)
    for module in modules:  # sentence-transformers modules after the first live in subfolders (e.g. 1_Pooling)
        if module.get("path") and (source / module["path"]).is_dir():
            shutil.copytree(source / module["path"], out / module["path"], dirs_exist_ok=True)
