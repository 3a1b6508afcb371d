"""Faster image preprocessing for encoding: the same pixels as the model's own CLIP processor, with less overhead.

What it is for: on a CPU, transformers' PIL image processor spends about half its time outside the resize (array
conversions, per-image rescale and normalise, validation) and runs on one core; for a small model it costs as much as
the forward pass. :func:`batch_preprocessor` returns a function that does the same steps in the same arithmetic: PIL's
resize on the image itself (as transformers does for 8-bit images), on several threads, the same crop offsets, rescale
in float64 then float32 and normalise in float32, but the last two once per batch. It is used only when the
processor is the PIL backend of a CLIP-style processor (shortest-edge resize, centre crop, rescale, normalise, nothing
else) and after checking on the first image that its pixels equal the processor's bit for bit; otherwise the model's
own ``preprocess`` is used.
What it is not: a new preprocessing. It must never change a pixel; the test compares against the processor.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def batch_preprocessor(model, probe, pool=None) -> Callable[[list], dict]:
    """A ``list of PIL images -> model features`` function equal to ``model.preprocess`` (checked on ``probe``, one
    image); ``model.preprocess`` itself when the fast path does not apply. With ``pool`` (a thread pool), images are
    resized in parallel: PIL releases the GIL while it resamples."""
    fast = _fast_path(model, pool)
    if fast is None or getattr(probe, "mode", None) != "RGB":
        return model.preprocess
    reference = model.preprocess([probe])
    try:
        ours = fast([probe])
    except _NotHandled:
        return model.preprocess
    same = ours.keys() == reference.keys() and all(
        np.array_equal(np.asarray(ours[k]), np.asarray(reference[k])) for k in reference)
    return fast if same else model.preprocess


class _NotHandled(Exception):
    """An image outside the fast path's cases (not RGB, smaller than the crop): use the processor for its batch."""


def _fast_path(model, pool=None):
    import torch

    processor = getattr(getattr(model[0], "processor", None), "image_processor", None)
    if processor is None or getattr(processor, "backend", None) != "pil" or not _plain_clip_steps(processor):
        return None
    size, crop = processor.size.shortest_edge, (processor.crop_size.height, processor.crop_size.width)
    scale, resample = processor.rescale_factor, processor.resample
    mean = np.array(processor.image_mean, dtype=np.float32)
    std = np.array(processor.image_std, dtype=np.float32)

    def preprocess(images: list) -> dict:
        try:
            crops = np.stack(list((pool.map if pool else map)(lambda im: _resize_crop(im, size, crop, resample),
                                                              images)))
        except _NotHandled:
            return model.preprocess(images)
        # transformers: rescale = (uint8 as float64 * factor) as float32; normalise = (x - mean) / std in float32.
        pixels = ((crops.astype(np.float64) * scale).astype(np.float32) - mean) / std
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))),
                "modality": "image"}

    return preprocess


def _plain_clip_steps(p) -> bool:
    """Shortest-edge resize, centre crop, rescale, normalise, RGB conversion: nothing else and nothing missing."""
    size, crop = getattr(p, "size", None), getattr(p, "crop_size", None)
    return bool(p.do_resize and size is not None and size.shortest_edge and not size.longest_edge
                and p.do_center_crop and crop is not None and crop.height and crop.width
                and p.do_rescale and p.do_normalize and not getattr(p, "do_pad", False)
                and getattr(p, "do_convert_rgb", True) is not False and isinstance(p.resample, int))


def _resize_crop(image, shortest_edge: int, crop: tuple[int, int], resample: int) -> np.ndarray:
    """HWC uint8 pixels, resized and centre-cropped exactly as transformers' PIL backend does."""
    from transformers.image_transforms import get_resize_output_image_size
    from transformers.image_utils import ChannelDimension

    if getattr(image, "mode", None) != "RGB":
        raise _NotHandled
    w, h = image.size
    # transformers' own size rule (int truncation of the long side), given a channel-first shape to read.
    new_h, new_w = get_resize_output_image_size(np.empty((3, h, w), np.uint8), size=shortest_edge,
                                                default_to_square=False, input_data_format=ChannelDimension.FIRST)
    resized = np.asarray(image.resize((new_w, new_h), resample=resample))
    top, left = (new_h - crop[0]) // 2, (new_w - crop[1]) // 2
    if top < 0 or left < 0:
        raise _NotHandled  # transformers pads such images; leave them to it
    return resized[top:top + crop[0], left:left + crop[1]]


class CollatorPreprocess:
    """``model.preprocess`` for the trainer's data collator, taking the fast path for columns of plain RGB images.

    The collator preprocesses each column of a training batch on the main process between optimiser steps, so the
    processor's single-threaded resize sits on the critical path of training just as it does in encoding. Text
    columns, prompts, tasks and images the fast path does not handle go to ``model.preprocess`` unchanged.
    """

    def __init__(self, model):
        self.model = model
        self._fast, self._pool = None, None

    def __call__(self, inputs, prompt=None, task=None, **kwargs):
        if prompt is None and task is None and not kwargs and _all_rgb(inputs):
            fast = self._fast_for(inputs[0])
            if fast is not self.model.preprocess:
                return fast(inputs)
        return self.model.preprocess(inputs, prompt=prompt, task=task, **kwargs)

    def _fast_for(self, probe):
        if self._fast is None:
            from concurrent.futures import ThreadPoolExecutor

            import torch

            workers = torch.get_num_threads()
            self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
            self._fast = batch_preprocessor(self.model, probe, self._pool)
        return self._fast

    def __getstate__(self):  # data-loader workers get a copy: thread pools do not pickle, each builds its own
        return {"model": self.model, "_fast": None, "_pool": None}


def _all_rgb(inputs) -> bool:
    from PIL import Image

    return bool(inputs) and all(isinstance(x, Image.Image) and x.mode == "RGB" for x in inputs)


def encode_batches(model, images: list, batch_size: int, progress: bool = False) -> np.ndarray:
    """``model.encode(images, normalize_embeddings=True)``'s loop (preprocess, forward, normalise) with
    :func:`batch_preprocessor` resizing on as many threads as torch uses.

    On a CPU the two phases take turns, each on every core (measured on 2 cores: overlapping them made the model's
    threads and the resize threads compete, and was slower). On a GPU the CPU is idle during the forward pass, so the
    next batch is preprocessed meanwhile.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from sentence_transformers.util import batch_to_device
    from tqdm.auto import tqdm

    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    workers, ahead = torch.get_num_threads(), model.device.type != "cpu"
    model.eval()
    out = []
    with ThreadPoolExecutor(workers) as pool, ThreadPoolExecutor(1) as background, torch.inference_mode():
        preprocess = batch_preprocessor(model, images[0], pool if workers > 1 else None)
        pending = background.submit(preprocess, batches[0])
        for i in tqdm(range(len(batches)), desc="Batches", disable=not progress):
            features = pending.result()
            if i + 1 < len(batches):
                pending = background.submit(preprocess, batches[i + 1])
                if not ahead:
                    pending.result()  # let the resize threads finish before the model's threads start
            embeddings = model(batch_to_device(features, model.device))["sentence_embedding"]
            out.append(torch.nn.functional.normalize(embeddings, p=2, dim=1).cpu())
    stacked = torch.cat(out)
    return (stacked.float() if stacked.dtype == torch.bfloat16 else stacked).numpy()  # as encode: numpy has no bf16
