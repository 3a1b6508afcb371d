"""From-scratch CLIPs: the BPE tokenizer trained on captions, the model builder and the folder they are saved to."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cellst.errors import CellstError
from cellst.scratch import BOS, EOS, PRESETS, build_clip, init_model, train_tokenizer

CAPTIONS = ["The cell is large.", "The nucleus is kidney-shaped.", "Granules: dark purple.",
            "The N:C ratio is high.", "A cell with a bilobed nucleus."] * 20


def test_tokenizer_round_trips_and_never_puts_eos_inside_a_caption():
    tok = train_tokenizer(CAPTIONS, vocab_size=1000)
    for text in CAPTIONS[:5] + ["An unseen word: zygote, 42 µm!"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        # CLIP pools the text at the first EOS: an unknown piece mapped to EOS would cut the caption short.
        assert tok.eos_token_id not in ids[1:-1]
        # CLIP's decoder puts a space at every word end, punctuation included: compare without spaces.
        assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == text.lower().replace(" ", "")
    # Frequent caption words become single pieces: the BPE actually learned from the captions.
    assert len(tok("The nucleus is kidney-shaped.")["input_ids"]) < len("The nucleus is kidney-shaped.") // 2


def test_tokenizer_ids_are_the_same_in_every_process():
    # The trainer breaks ties in hash-map order, which changes between processes; cellst numbers the pieces itself.
    script = ("from cellst.scratch import train_tokenizer; import json; "
              f"t = train_tokenizer({CAPTIONS!r}, 300); "
              f"print(json.dumps([sorted(t.get_vocab().items()), [t(c)['input_ids'] for c in {CAPTIONS[:5]!r}]]))")
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(runs) == 1


def test_builder_follows_the_preset_and_the_tokenizer():
    model, processor = build_clip("micro", CAPTIONS, seed=0)
    p = PRESETS["micro"]
    tok = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tok)
    assert (model.config.text_config.eos_token_id, model.config.text_config.bos_token_id) == \
        (tok.convert_tokens_to_ids(EOS), tok.convert_tokens_to_ids(BOS))
    assert model.config.vision_config.image_size == p.image_size == processor.image_processor.crop_size["height"]
    assert model.config.vision_config.patch_size == p.patch_size and model.config.projection_dim == p.projection_dim
    same, _ = build_clip("micro", CAPTIONS, seed=0)
    other, _ = build_clip("micro", CAPTIONS, seed=1)
    weights = {k: v for k, v in model.state_dict().items()}
    assert all(np.array_equal(v.numpy(), same.state_dict()[k].numpy()) for k, v in weights.items())
    assert not np.array_equal(weights["visual_projection.weight"].numpy(),
                              other.state_dict()["visual_projection.weight"].numpy())


def test_small_preset_is_about_two_million_parameters():
    model, _ = build_clip("small", CAPTIONS, seed=0)
    assert 1.5e6 < sum(p.numel() for p in model.parameters()) < 3e6


def test_saved_folder_loads_as_a_multimodal_sentence_transformer(tmp_path):
    from PIL import Image
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPModel

    out = init_model(tmp_path / "m", "micro", CAPTIONS, seed=0)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    st = SentenceTransformer(str(out))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    img = st.encode([image])
    txt = st.encode(["The cell is large."])
    assert img.shape == txt.shape == (1, PRESETS["micro"].projection_dim)
    clip = CLIPModel.from_pretrained(str(out))
    import torch

    with torch.inference_mode():
        ids = st[0].processor.tokenizer(["The cell is large."], return_tensors="pt")
        plain = clip.get_text_features(**ids)
    plain = getattr(plain, "pooler_output", plain)
    assert np.allclose(plain.numpy(), txt, atol=1e-5)


def test_no_captions_and_unknown_preset_are_clear_errors(tmp_path):
    with pytest.raises(CellstError, match="no captions"):
        train_tokenizer(["", "  "])
    with pytest.raises(CellstError, match="preset"):
        build_clip("huge", CAPTIONS)
