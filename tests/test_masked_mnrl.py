"""The masked MNRL loss: known positives never act as negatives; otherwise it is plain symmetric InfoNCE."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cellst.masked_mnrl import KnownPositives, MaskedMultipleNegativesRankingLoss


class Lookup(torch.nn.Module):
    """A fake encoder: the features already are the embeddings."""

    def forward(self, features):
        return {"sentence_embedding": features["emb"]}


FRAME = pd.DataFrame({"image": ["A", "B", "A"], "caption": ["large", "large2", "round"], "label": [1, 1, 1]})


def loss_for(frame, rows, img, txt, symmetric=False):
    known = KnownPositives([frame])
    ids = torch.tensor([known.register(*r) for r in rows])
    loss = MaskedMultipleNegativesRankingLoss(Lookup(), known, scale=1.0, symmetric=symmetric)
    return loss([{"emb": img}, {"emb": txt}], ids)


def test_without_shared_positives_it_is_plain_infonce():
    img = torch.eye(2)
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    got = loss_for(FRAME, [("A", "large"), ("B", "large2")], img, txt)
    # image A: logits (1, .6) target 0; image B: logits (0, .8) target 1
    expected = (-math.log(math.e / (math.e + math.e ** 0.6)) - math.log(math.e ** 0.8 / (1 + math.e ** 0.8))) / 2
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_a_caption_true_of_the_image_is_not_its_negative():
    img = torch.eye(2)  # A = (1, 0), B = (0, 1)
    txt = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # "round" = (0, 1), "large" = (1, 0)
    rows = [("A", "round"), ("B", "large")]
    base = pd.DataFrame({"image": ["A", "B"], "caption": ["round", "large"], "label": [1, 1]})
    # Image A: logits round 0, large 1, target round: log(1 + e). Image B: round 1, large 0, target large: log(1 + e).
    plain = loss_for(base, rows, img, txt)
    assert plain.item() == pytest.approx(math.log(1 + math.e), rel=1e-5)
    # When the table also says "large" is true of A, it stops being A's negative: A's term is 0.
    shared = pd.concat([base, pd.DataFrame({"image": ["A"], "caption": ["large"], "label": [1]})])
    masked = loss_for(shared, rows, img, txt)
    assert masked.item() == pytest.approx(math.log(1 + math.e) / 2, rel=1e-5)


def test_symmetric_adds_the_text_to_image_direction():
    img = torch.eye(2)
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    one = loss_for(FRAME, [("A", "large"), ("B", "large2")], img, txt)
    both = loss_for(FRAME, [("A", "large"), ("B", "large2")], img, txt, symmetric=True)
    # text -> image: "large": (1, 0) target 0; "large2": (.6, .8) target 1
    t2i = (-math.log(math.e / (math.e + 1)) - math.log(math.e ** 0.8 / (math.e ** 0.6 + math.e ** 0.8))) / 2
    assert both.item() == pytest.approx((one.item() + t2i) / 2, rel=1e-5)


def test_another_phrasing_of_a_true_value_is_not_a_negative():
    img = torch.eye(2)
    txt = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    rows = [("A", "round"), ("B", "large")]
    base = pd.DataFrame({"image": ["A", "B"], "caption": ["round", "large"], "label": [1, 1],
                         "descriptor": ["shape", "size"], "value": ["round", "large"]})
    # A is also annotated size=large, in other words ("big"): "large" is then true of A and masked for it.
    synonym = pd.DataFrame({"image": ["A"], "caption": ["big"], "label": [1], "descriptor": ["size"],
                            "value": ["large"]})
    masked = loss_for(pd.concat([base, synonym]), rows, img, txt)
    assert masked.item() == pytest.approx(math.log(1 + math.e) / 2, rel=1e-5)
    # Without the value column the two phrasings are unrelated and "large" stays A's negative.
    plain = loss_for(pd.concat([base, synonym]).drop(columns="value"), rows, img, txt)
    assert plain.item() == pytest.approx(math.log(1 + math.e), rel=1e-5)
