"""From-scratch CLIP models: a BPE tokenizer trained on the user's captions plus a randomly initialised CLIP.

What it is for: offline work (tests, the demo, speed benchmarks) where no pretrained weights can be downloaded. The
folder it writes is an ordinary Hugging Face CLIP folder, so ``SentenceTransformer(folder)``, ``CLIPModel.from_pretrained``
and ``cellst finetune --model folder`` treat it exactly like ``openai/clip-vit-base-patch32``.
What it is not: a replacement for pretrained weights; a model built here knows nothing until it is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import CellstError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass(frozen=True)
class Preset:
    """The shape of a CLIP: a text and a vision transformer joined by projections to ``projection_dim``."""

    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    projection_dim: int
    vocab_size: int = 2000
    max_text_len: int = 77


PRESETS: dict[str, Preset] = {
    # micro: for tests; trains a step in milliseconds.
    "micro": Preset(32, 8, 32, 2, 2, 32, 2, 2, 32, vocab_size=600, max_text_len=64),
    # small: about 2M parameters at 96 px; learns the demo cells on a 2-core CPU in minutes.
    "small": Preset(96, 12, 128, 4, 4, 128, 4, 4, 128, vocab_size=1000, max_text_len=64),
    # base: the ViT-B/32 shape of openai/clip-vit-base-patch32, for speed measurements.
    "base": Preset(224, 32, 768, 12, 12, 512, 12, 8, 512, vocab_size=49408, max_text_len=77),
}


def train_tokenizer(captions: Iterable[str], vocab_size: int = 2000):
    """Train a CLIP-style byte-level BPE tokenizer on ``captions`` and wrap it as a ``CLIPTokenizer``.

    The normaliser and pre-tokeniser match CLIP's, so the tokenizer behaves like the pretrained one on any text.
    Every byte, with and without the end-of-word suffix, is in the vocabulary: an unknown piece would map to the
    EOS id, and CLIP pools the text at the first EOS, so it must never appear inside a caption.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=EOS))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    split = Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(split, behavior="removed", invert=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS, EOS], end_of_word_suffix="</w>", initial_alphabet=alphabet
    )
    captions = [c for c in captions if isinstance(c, str) and c.strip()]
    if not captions:
        raise CellstError("Cannot train a tokenizer: no captions were given. Pass a CSV with a non-empty caption column.")
    tok.train_from_iterator(captions, trainer)

    merges = [tuple(m) for m in tok.model.get_merges()] if hasattr(tok.model, "get_merges") else _merges(tok)
    # The trainer breaks ties between equally frequent pairs in hash-map order, which changes from process to process,
    # so the order of its merges and ids does too; an id picks an embedding row. Numbering the pieces in sorted order
    # makes one seed give one model (the merges' ranks only matter between overlapping merges, see test_scratch).
    pieces = [BOS, EOS, *sorted(alphabet), *sorted(c + "</w>" for c in alphabet), *sorted(tok.get_vocab())]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    return CLIPTokenizer(vocab=vocab, merges=merges)


def _merges(tok) -> list[tuple[str, str]]:
    import json

    raw = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in raw]


def build_clip(preset: str | Preset, captions: Iterable[str], seed: int = 0):
    """Return ``(CLIPModel, CLIPProcessor)`` with random weights and a tokenizer trained on ``captions``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    p = _preset(preset)
    tokenizer = train_tokenizer(captions, p.vocab_size)
    text = dict(
        vocab_size=len(tokenizer), hidden_size=p.text_width, intermediate_size=4 * p.text_width,
        num_hidden_layers=p.text_layers, num_attention_heads=p.text_heads, max_position_embeddings=p.max_text_len,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=p.vision_width, intermediate_size=4 * p.vision_width, num_hidden_layers=p.vision_layers,
        num_attention_heads=p.vision_heads, image_size=p.image_size, patch_size=p.patch_size,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=p.projection_dim)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    tokenizer.model_max_length = p.max_text_len
    size = {"shortest_edge": p.image_size}
    crop = {"height": p.image_size, "width": p.image_size}
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size=size, crop_size=crop), tokenizer=tokenizer)
    return model, processor


def init_model(output: str | Path, preset: str = "small", captions: Iterable[str] = (), seed: int = 0,
               overwrite: bool = False) -> Path:
    """Write a from-scratch CLIP folder to ``output`` and return its path.

    Example::

        from cellst import init_model
        init_model("models/small", preset="small", captions=["The cell is large.", "The nucleus is round."])
    """
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CellstError(f"{out} already exists and is not empty. Choose another folder or pass overwrite=True "
                          "(--overwrite); cellst never replaces a folder you did not ask it to.")
    model, processor = build_clip(preset, captions, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def _preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise CellstError(f"Unknown model preset '{preset}'. Expected one of: {', '.join(PRESETS)}.")
    return PRESETS[preset]
