"""Loading a CLIP-like SentenceTransformer and encoding images and texts with it.

Anything ``SentenceTransformer(...)`` loads is accepted, a hub id or a local folder, as long as it embeds both images and
texts. Encoding goes through sentence-transformers so the figures cellst reports equal what users get from the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CellstError


def load_model(name_or_path: str | Path, device: str | None = None, trust_remote_code: bool = False):
    """Load a SentenceTransformer that supports both ``image`` and ``text``, or raise :class:`CellstError`."""
    from sentence_transformers import SentenceTransformer

    name = str(name_or_path)
    local = Path(name)
    if local.exists() and not local.is_dir():
        raise CellstError(f"--model {name} is a file; expected a model folder or a hub id such as "
                          "openai/clip-vit-base-patch32.")
    try:
        model = SentenceTransformer(name, device=device, trust_remote_code=trust_remote_code)
    except Exception as exc:
        hint = ("the folder does not hold a loadable model (config.json, weights, processor files)" if local.is_dir()
                else "it is neither a local folder nor a model id the Hugging Face Hub could provide (offline?)")
        raise CellstError(f"Cannot load model '{name}': {hint}. Loader said: {type(exc).__name__}: {exc}") from None
    require_image_text(model, name)
    return model


def require_image_text(model, name: str = "model") -> None:
    missing = [m for m in ("image", "text") if not model.supports(m)]
    if missing:
        raise CellstError(f"Model '{name}' cannot embed {' or '.join(missing)} (it supports: "
                          f"{', '.join(model.modalities)}). cellst needs an image-text model such as a CLIP, e.g. "
                          "openai/clip-vit-base-patch32, or one made by `cellst init-model`.")


def encode_texts(model, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-normalised text embeddings, shape ``(len(texts), dim)``."""
    return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=progress)


def encode_images(model, images: Sequence, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-normalised image embeddings; ``images`` are PIL images (decode paths with :func:`cellst.images.load_rgb`).

    Equal to ``model.encode(images, normalize_embeddings=True)`` to float rounding, and faster on a CPU, where image
    preprocessing costs as much as a small model's forward pass: :mod:`cellst.fast_images` gives the processor's exact
    pixels with less overhead, resizing on several threads (and, on a GPU, prepares the next batch while the model
    embeds this one).
    """
    images = list(images)
    # The fast path needs a real SentenceTransformer (model[0] holds the processor); any other encoder, or a model whose
    # encode was wrapped on the instance (instrumentation, caching), is called through its own encode.
    plain = hasattr(model, "__getitem__") and "encode" not in vars(model)
    if not images or not plain or getattr(model, "truncate_dim", None) is not None:
        return model.encode(images, batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=progress)
    from .fast_images import encode_batches

    return encode_batches(model, images, batch_size, progress)
