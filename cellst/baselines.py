"""Baselines on the same split and the same queries as the model, so the lift over them is visible.

What it is for: records shaped like :mod:`cellst.evaluation`'s (plus ``"model": "random"`` or ``"tfidf"``) that sit beside
the model's before/after rows in ``metrics.json`` and the report. What it is not: a model; nothing here is trained.

``random``
    The exact expectation of every figure under a uniformly random ranking of the candidates, not a sample. It is the
    special case "every score tied" of :func:`expected_metrics`, which gives the exact expectation when tied scores are
    ordered uniformly at random. Covered: accuracy@k, precision@k, recall@k, MRR@10, NDCG@10, MAP@100 and the mean
    rank of the first relevant item. The median rank is omitted: the median of a random rank is not an expectation.
``tfidf``
    A bag-of-words text baseline in MiniCLIP's sense: it needs text on both ends, so each candidate IMAGE is
    represented by text that does not state the answer. An image's document is the concatenation of its positive
    captions in the split about OTHER descriptors than the caption it is scored against (leave-one-descriptor-out);
    without a descriptor column, its positive captions other than that caption itself (MiniCLIP's leave-one-out).
    Negative captions are never used (they are false statements about the image). Caption and document are TF-IDF
    vectors (scikit-learn, IDF fitted on the training split's captions when given) and the score is their cosine.
    So it measures how far the image's other annotations, read as words, predict this one: a text shortcut the image
    model does not get. Ties (common: many documents share no word with the caption) are ordered at random, exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluation import _specific_overall  # the same query-weighted pooling the model's records get
from .retrieval import DEFAULT_KS, DIRECTIONS, RULES, Task, build_tasks, chance_metrics

NDCG_K, MRR_K, MAP_K = 10, 10, 100  # as retrieval.task_metrics asks InformationRetrievalEvaluator for them


def expected_metrics(scores: np.ndarray, relevant: set[int], ks=DEFAULT_KS) -> dict[str, float]:
    """Exact expected figures for one query when candidates with equal scores are ordered uniformly at random.

    Definitions follow sentence-transformers' ``InformationRetrievalEvaluator``. Without ties this is that evaluator's
    value; with every score tied it is the random-ranking expectation.
    """
    n, rel = len(scores), len(relevant)
    p_rel, n_upto = _position_terms(np.asarray(scores, float), relevant)
    first_rank, p_first = _first_relevant(np.asarray(scores, float), relevant)
    out: dict[str, float] = {}
    for k in ks:
        hits = p_rel[:k].sum()
        out[f"accuracy@{k}"] = float(p_first[first_rank <= k].sum())
        out[f"precision@{k}"] = float(hits / k)
        out[f"recall@{k}"] = float(hits / rel)
    discounts = 1 / np.log2(np.arange(2, n + 2))
    out[f"ndcg@{NDCG_K}"] = float((p_rel[:NDCG_K] * discounts[:NDCG_K]).sum() / discounts[:min(rel, NDCG_K)].sum())
    in_top = first_rank <= MRR_K
    out[f"mrr@{MRR_K}"] = float((p_first[in_top] / first_rank[in_top]).sum())
    precision_at = p_rel * n_upto / np.arange(1, n + 1)
    out[f"map@{MAP_K}"] = float(precision_at[:MAP_K].sum() / min(MAP_K, rel))
    out["mean_rank"] = float((p_first * first_rank).sum())
    return out


def _groups(scores: np.ndarray, relevant: set[int]):
    """Tie groups, best first: (offset, size, relevant count, relevant items before the group)."""
    _, inverse, sizes = np.unique(-scores, return_inverse=True, return_counts=True)
    rel_in = np.bincount(inverse[sorted(relevant)], minlength=len(sizes))
    return np.cumsum(sizes) - sizes, sizes, rel_in, np.cumsum(rel_in) - rel_in


def _position_terms(scores: np.ndarray, relevant: set[int]):
    """Per rank p: P(relevant at p), and E[relevant items in ranks 1..p | relevant at p] (for average precision)."""
    groups = _groups(scores, relevant)
    offset, size, rel_in, before = (np.repeat(a, groups[1]) for a in groups)
    p = np.arange(1, len(scores) + 1)
    p_rel = rel_in / size
    # Given p is relevant, each of the group's other p-offset-1 earlier places holds one of its rel_in-1 others
    # with probability (rel_in-1)/(size-1).
    earlier = np.where(size > 1, (p - offset - 1) * (rel_in - 1) / np.maximum(size - 1, 1), 0.0)
    return p_rel, before + 1 + earlier


def _first_relevant(scores: np.ndarray, relevant: set[int]):
    """Ranks the first relevant item can take and their probabilities (it lies in the first group holding one)."""
    offset, size, rel_in, _ = _groups(scores, relevant)
    g = int(np.argmax(rel_in > 0))
    o, s, r = int(offset[g]), int(size[g]), int(rel_in[g])
    i = np.arange(1, s - r + 2)
    # P(first > i) = C(s-i, r) / C(s, r) = prod_{j<i} (s-r-j)/(s-j), as a running product (no huge binomials).
    survive = np.concatenate([[1.0], np.cumprod((s - r - i + 1) / (s - i + 1))])
    return o + i, survive[:-1] - survive[1:]


def records_from_scores(frame: pd.DataFrame, score_fn, model: str, split: str = "test", rules=RULES,
                        ks=DEFAULT_KS, directions=tuple(DIRECTIONS)) -> list[dict]:
    """Records for every task of ``frame``, each query's figures the exact tie-aware expectation.

    ``score_fn(task) -> array (queries x candidates)`` scores one task.
    """
    records = []
    for task in build_tasks(frame, directions, rules):
        scores = score_fn(task)
        per_query = [expected_metrics(row, rel, ks) for row, rel in zip(scores, task.relevant)]
        metrics = {key: float(np.mean([q[key] for q in per_query])) for key in per_query[0]}
        records.append({"split": split, "direction": task.direction, "rule": task.rule, "scope": task.scope,
                        "n_queries": len(task.queries), "n_candidates": len(task.candidates),
                        "metrics": metrics, "chance": chance_metrics(task, ks)})
    return [{**r, "model": model} for r in records + _specific_overall(records)]


def random_records(frame: pd.DataFrame, split: str = "test", rules=RULES, ks=DEFAULT_KS) -> list[dict]:
    """The exact random-ranking expectation for every task of the split (every score tied)."""
    return records_from_scores(frame, lambda t: np.zeros((len(t.queries), len(t.candidates))), "random", split,
                               rules, ks)


def tfidf_records(frame: pd.DataFrame, fit_texts=None, split: str = "test", rules=RULES,
                  ks=DEFAULT_KS) -> list[dict]:
    """The leave-one-descriptor-out TF-IDF baseline (module docstring) for every task of the split.

    ``fit_texts``: texts the IDF weights are learnt from (the training captions); default the split's own captions,
    which uses no label.
    """
    captions, images, scores = tfidf_scores(frame, fit_texts)
    c_index = {c: i for i, c in enumerate(captions)}
    i_index = {m: j for j, m in enumerate(images)}

    def score_task(task: Task) -> np.ndarray:
        if task.direction == "text_to_image":
            return scores[np.ix_([c_index[q] for q in task.queries], [i_index[c] for c in task.candidates])]
        return scores[np.ix_([c_index[c] for c in task.candidates], [i_index[q] for q in task.queries])].T

    return records_from_scores(frame, score_task, "tfidf", split, rules, ks)


def tfidf_scores(frame: pd.DataFrame, fit_texts=None) -> tuple[list[str], list[str], np.ndarray]:
    """``(captions, images, S)`` with ``S[c, i]`` the cosine of caption ``c`` and image ``i``'s held-out document."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    captions = list(dict.fromkeys(frame["caption"]))
    images = list(dict.fromkeys(frame["image"]))
    vectorizer = TfidfVectorizer().fit(list(fit_texts) if fit_texts is not None else captions)
    held_out = _held_out_key(frame)
    positives = frame[frame["label"] == 1]
    scores = np.zeros((len(captions), len(images)))
    for key, caption_ids in _captions_by_key(captions, frame, held_out).items():
        kept = positives[held_out(positives) != key]
        docs = kept.groupby("image", sort=False)["caption"].agg(" ".join).reindex(images).fillna("")
        # TfidfVectorizer L2-normalises each row, so the dot product is the cosine (0 for an empty document).
        scores[caption_ids] = (vectorizer.transform([captions[i] for i in caption_ids]) @
                               vectorizer.transform(docs.tolist()).T).toarray()
    return captions, images, scores


def _held_out_key(frame: pd.DataFrame):
    """What a document leaves out when scored against a caption: that caption's descriptor, else the caption."""
    if "descriptor" in frame and (frame["descriptor"] != "").any():
        return lambda rows: rows["descriptor"].where(rows["descriptor"] != "", "caption:" + rows["caption"])
    return lambda rows: "caption:" + rows["caption"]


def _captions_by_key(captions: list[str], frame: pd.DataFrame, held_out) -> dict[str, list[int]]:
    """Caption indices grouped by the key their documents leave out (a caption's descriptor is its first row's)."""
    first = frame.drop_duplicates("caption").set_index("caption")
    keys = held_out(first.reset_index()).tolist()
    key_of = dict(zip(first.index, keys))
    groups: dict[str, list[int]] = {}
    for i, caption in enumerate(captions):
        groups.setdefault(key_of[caption], []).append(i)
    return groups
