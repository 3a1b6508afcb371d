"""Retrieval tasks and their figures: which queries, which candidates, which candidates count as relevant.

A :class:`Task` is one ranking problem built from a split frame (columns ``image``, ``caption``, ``label``,
``descriptor``). Its figures come from a score matrix (queries x candidates, cosine similarities) through
sentence-transformers' ``InformationRetrievalEvaluator.compute_metrics``, so cellst's recall means exactly what the
library's does; cellst adds the rank of the first relevant item (MedR) and the exact expectation under random ranking.

Scopes:
    ``non-specific``          every candidate of the split (the thesis's global recall);
    ``specific:<descriptor>`` only the rows about one descriptor: candidates are the images (or captions) annotated for
                              it. ``specific`` is the query-weighted mean over descriptors.
Relevance rules (:data:`RULES`):
    ``pair``     only the row's own partner is relevant (as the thesis counted);
    ``caption``  one query per distinct text (or image); every partner in the scope that the split says the caption is
                 true of is relevant: its own positives and, where the split states descriptor values, every image
                 with the same value in other words (:func:`cellst.data.known_true`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np
import pandas as pd

from .data import known_true

DIRECTIONS = {"text_to_image": ("caption", "image"), "image_to_text": ("image", "caption")}  # (query, candidate)
RULES = ("pair", "caption")
DEFAULT_KS = (1, 5, 10)


@dataclass
class Task:
    direction: str
    rule: str
    scope: str
    queries: list[str]  # keys into the query side's embeddings (caption text or image path)
    candidates: list[str]
    relevant: list[set[int]] = field(default_factory=list)  # per query: indices into ``candidates``


def build_tasks(frame: pd.DataFrame, directions=tuple(DIRECTIONS), rules=RULES) -> list[Task]:
    """Every (direction, rule, scope) task the frame supports; specific scopes need a ``descriptor`` column."""
    scopes = [("non-specific", frame)]
    if "descriptor" in frame:
        described = frame[frame["descriptor"] != ""]
        scopes += [(f"specific:{d}", rows) for d, rows in described.groupby("descriptor", sort=True)]
    return [_task(rows, direction, rule, scope) for direction in directions for rule in rules
            for scope, rows in scopes if (rows["label"] == 1).any()]


def _task(rows: pd.DataFrame, direction: str, rule: str, scope: str) -> Task:
    q_side, c_side = DIRECTIONS[direction]
    candidates = list(dict.fromkeys(rows[c_side]))
    index = {c: i for i, c in enumerate(candidates)}
    positives = rows[rows["label"] == 1]
    if rule == "pair":
        queries = positives[q_side].tolist()
        relevant = [{index[c]} for c in positives[c_side]]
    else:
        queries = list(dict.fromkeys(positives[q_side]))
        images, captions = (candidates, queries) if q_side == "caption" else (queries, candidates)
        true = known_true(rows, images, captions)
        true = true.T if q_side == "caption" else true  # one row per query
        relevant = [set(np.flatnonzero(row).tolist()) for row in true]
    return Task(direction, rule, scope, queries, candidates, relevant)


def task_metrics(task: Task, scores: np.ndarray, ks=DEFAULT_KS) -> dict[str, float]:
    """Figures for ``task`` given ``scores[q, c]``: accuracy/precision/recall@k, MRR@10, NDCG@10, MAP@100, ranks."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    n_q, n_c = scores.shape
    qids, cids = [f"q{i:08d}" for i in range(n_q)], [f"{j:08d}" for j in range(n_c)]
    relevant = {q: {cids[j] for j in rel} for q, rel in zip(qids, task.relevant)}
    ir = InformationRetrievalEvaluator(
        queries=dict.fromkeys(qids, ""), corpus=dict.fromkeys(cids, ""), relevant_docs=relevant,
        accuracy_at_k=list(ks), precision_recall_at_k=list(ks), mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[100],
        write_csv=False)
    # Ties are broken by candidate order, as InformationRetrievalEvaluator does, so figures are deterministic.
    order = np.lexsort((np.broadcast_to(np.arange(n_c), scores.shape), -scores), axis=1)
    top = max(max(ks), 100)
    results = [[{"corpus_id": cids[j], "score": float(scores[i, j])} for j in order[i, :top]] for i in range(n_q)]
    raw = ir.compute_metrics(results)
    out = {f"{name.replace('@k', '')}@{k}": float(v) for name, by_k in raw.items() for k, v in by_k.items()}
    first = first_relevant_ranks(order, task.relevant)
    out["mean_rank"], out["median_rank"] = float(first.mean()), float(np.median(first))
    return out


def first_relevant_ranks(order: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    """1-based rank of the best-placed relevant candidate for each query."""
    ranks = np.empty(len(relevant))
    for i, rel in enumerate(relevant):
        hits = np.isin(order[i], list(rel))
        ranks[i] = int(np.argmax(hits)) + 1
    return ranks


def chance_metrics(task: Task, ks=DEFAULT_KS) -> dict[str, float]:
    """Exact expected figures under a uniformly random ranking (not a sample), averaged over the task's queries."""
    n = len(task.candidates)
    per_query = [_chance_one(n, len(rel), ks) for rel in task.relevant]
    return {key: float(np.mean([q[key] for q in per_query])) for key in per_query[0]}


def _chance_one(n: int, r: int, ks) -> dict[str, float]:
    out = {}
    for k in ks:
        kk = min(k, n)
        out[f"accuracy@{k}"] = 1 - comb(n - r, kk) / comb(n, kk)
        out[f"recall@{k}"] = kk / n  # each relevant item is in the top k with probability k/n
        out[f"precision@{k}"] = r * kk / n / k
    # P(first relevant at rank i) = C(n-i, r-1) / C(n, r)
    p_first = [comb(n - i, r - 1) / comb(n, r) for i in range(1, n + 1)]
    out["mrr@10"] = sum(p / i for i, p in enumerate(p_first[:10], start=1))
    out["mean_rank"] = (n + 1) / (r + 1)
    return out
