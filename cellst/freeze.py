"""Choosing which weights train: freeze one tower of a CLIP, optionally keeping its top layers trainable.

What it is for: fine-tuning with little data, where updating both towers overfits or forgets. Freezing the text tower
keeps the caption space of the pretrained model (PubMedCLIP's FREEZE_TEXT_ENCODER); freezing the vision tower adapts
only the language side. ``unfreeze_last N`` is the usual middle way: the frozen tower still trains its top N encoder
layers *and everything above them* (the final layer norm and the projection), because those only ever see the output
of the top layers; training the layers while freezing the head above them would make the head fit features it was not
trained for. Embeddings and the lower layers stay as they were.
What it is not: LoRA (:mod:`cellst.lora`), which trains small adapters instead of any existing weight.

The sentence-transformers trainer only optimises parameters with ``requires_grad``, so freezing is all that is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import CellstError

log = logging.getLogger("cellst")


@dataclass(frozen=True)
class Tower:
    """Attribute names of one tower inside a transformers CLIP-like model."""

    body: str  # the transformer: embeddings, encoder.layers, final norm
    projection: str | None  # linear map into the shared space (CLIP has one; SigLIP's head sits in the body)
    final_norm: str  # layer norm after the last encoder layer, inside the body


TOWERS: dict[str, Tower] = {
    "vision": Tower("vision_model", "visual_projection", "post_layernorm"),
    "text": Tower("text_model", "text_projection", "final_layer_norm"),
}


# CLIP's own temperature (SigLIP adds a bias): cellst's losses apply their own scale, so these never get a gradient.
# Marked frozen so the trainable count is honest and DDP does not wait for gradients that never come.
UNUSED_BY_LOSSES = {"logit_scale", "logit_bias"}


def transformers_model(model):
    """The ``transformers`` model inside a SentenceTransformer (``model[0].auto_model``)."""
    try:
        return model[0].auto_model
    except (AttributeError, IndexError, TypeError):
        raise CellstError("Freezing needs a SentenceTransformer whose first module wraps a transformers model "
                          f"(model[0].auto_model); found {type(model).__name__}.") from None


def freeze_tower(model, tower: str, unfreeze_last: int = 0) -> None:
    """Freeze ``tower`` ('vision' or 'text') and its projection; keep its last ``unfreeze_last`` encoder layers, final
    layer norm and projection trainable (see the module docstring for why the head goes with the top layers)."""
    spec = _tower(tower)
    auto = transformers_model(model)
    body = _child(auto, spec.body, tower)
    projection = getattr(auto, spec.projection, None) if spec.projection else None
    for module in (body, projection):
        if module is not None:
            module.requires_grad_(False)
    if unfreeze_last:
        for module in _top(body, spec, tower, unfreeze_last) + [projection]:
            if module is not None:
                module.requires_grad_(True)


def choose_trainable(model, cfg) -> str:
    """Apply a config's ``freeze``, ``unfreeze_last`` and ``lora`` to ``model``; log and return the trainable share.

    With LoRA, a frozen tower gets no adapters at all (rather than adapters that are then frozen).
    """
    unused = [p for n, p in transformers_model(model).named_parameters() if n in UNUSED_BY_LOSSES]
    for parameter in unused:
        parameter.requires_grad_(False)
    if cfg.lora:
        from .lora import add_lora

        towers = tuple(t for t in TOWERS if t != cfg.freeze)
        add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, towers, base=cfg.model)
    elif cfg.freeze:
        freeze_tower(model, cfg.freeze, cfg.unfreeze_last)
    summary = trainable_summary(model)
    log.info("Training %s", summary)
    return summary


def _top(body, spec: Tower, tower: str, n: int) -> list:
    """The last ``n`` encoder layers and the final layer norm of ``body``."""
    layers = getattr(getattr(body, "encoder", None), "layers", None)
    if layers is None:
        raise CellstError(f"--unfreeze-last needs the {tower} tower's encoder layers ({spec.body}.encoder.layers); "
                          "this model has none. Freeze the whole tower (drop --unfreeze-last).")
    if not 0 < n <= len(layers):
        raise CellstError(f"--unfreeze-last {n}: the {tower} tower has {len(layers)} encoder layers; "
                          f"choose 1 to {len(layers)}.")
    return list(layers[-n:]) + [getattr(body, spec.final_norm, None)]


def trainable_summary(model) -> str:
    """``trainable 1,234 of 5,678 parameters (21.7%)``, for the log and the run's metrics."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.1f}%)"


def _tower(tower: str) -> Tower:
    if tower not in TOWERS:
        raise CellstError(f"Unknown tower '{tower}' for --freeze. Expected one of: {', '.join(TOWERS)}.")
    return TOWERS[tower]


def _child(auto, name: str, tower: str):
    module = getattr(auto, name, None)
    if module is None:
        found = ", ".join(n for n, _ in auto.named_children())
        raise CellstError(f"Cannot freeze the {tower} tower: the model ({type(auto).__name__}) has no '{name}' "
                          f"module (it has: {found}). --freeze supports CLIP-style image-text models.")
    return module
