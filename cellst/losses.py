"""The loss registry: one entry per ``--loss`` choice.

Each entry says how to build the sentence-transformers loss, which dataset view it trains on (see
:mod:`cellst.pairs`), which batch sampler it needs and what labels it accepts. The CLI's ``--loss`` choices are the keys
of :data:`LOSSES`; adding a loss is adding an entry, never an ``if`` on a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .distributed import world_size
from .errors import CellstError


@dataclass(frozen=True)
class LossOptions:
    """Knobs shared by the losses; each builder reads the ones it needs."""

    symmetric: bool = True  # MNRL: image->text and text->image terms
    scale: float = 20.0  # MNRL: inverse temperature applied to cosine similarities
    margin: float = 0.5  # Contrastive: distance below which negatives stop being pushed apart
    hard_negatives: bool = False  # MNRL: add each image's negative caption as a hard negative
    mini_batch_size: int | None = None  # MNRL: GradCache chunk size; None trains the whole batch at once
    mask_known_positives: bool = True  # MNRL: never treat a caption the table marks true of an image as its negative


@dataclass(frozen=True)
class LossSpec:
    build: Callable  # (model, LossOptions, KnownPositives | None) -> torch.nn.Module
    view: Callable[[LossOptions], str]  # dataset view the loss trains on
    summary: str
    float_labels: bool = False  # labels may be any value in [0, 1]
    in_batch_negatives: bool = False  # duplicates in a batch would be false negatives

    def masks_known_positives(self, o: LossOptions) -> bool:
        """Whether rows carry row ids for :class:`cellst.masked_mnrl.KnownPositives` (GradCache keeps the plain loss)."""
        return self.in_batch_negatives and o.mask_known_positives and not o.mini_batch_size


def _mnrl(model, o: LossOptions, known=None):
    from sentence_transformers.sentence_transformer import losses

    if known is not None and not o.mini_batch_size:
        from .masked_mnrl import MaskedMultipleNegativesRankingLoss

        return MaskedMultipleNegativesRankingLoss(model, known, scale=o.scale, symmetric=o.symmetric)
    directions = ("query_to_doc", "doc_to_query") if o.symmetric else ("query_to_doc",)
    # Under DDP each process sees only its share of the batch; gathering the other processes' embeddings gives
    # every image the whole global batch as negatives, as a single process with that batch would.
    kwargs = dict(scale=o.scale, directions=directions, partition_mode="per_direction",
                  gather_across_devices=world_size() > 1)
    if o.mini_batch_size:
        return losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=o.mini_batch_size, **kwargs)
    return losses.MultipleNegativesRankingLoss(model, **kwargs)


def _contrastive(model, o: LossOptions, known=None):
    from sentence_transformers.sentence_transformer import losses

    return losses.ContrastiveLoss(model, margin=o.margin)


def _cosine(model, o: LossOptions, known=None):
    from sentence_transformers.sentence_transformer import losses

    return losses.CosineSimilarityLoss(model)


LOSSES: dict[str, LossSpec] = {
    "mnrl": LossSpec(_mnrl, lambda o: "triplets" if o.hard_negatives else "pairs",
                     "MultipleNegativesRankingLoss: each image against every caption in the batch (symmetric)",
                     in_batch_negatives=True),
    "contrastive": LossSpec(_contrastive, lambda o: "labelled",
                            "ContrastiveLoss: pull labelled-1 pairs together, push 0 pairs past a margin"),
    "cosine": LossSpec(_cosine, lambda o: "labelled",
                       "CosineSimilarityLoss: regress the image-caption cosine onto the label",
                       float_labels=True),
}


def get_loss(name: str) -> LossSpec:
    if name not in LOSSES:
        raise CellstError(f"Unknown loss '{name}'. Expected one of: {', '.join(LOSSES)}.")
    return LOSSES[name]
