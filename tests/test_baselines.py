"""Baselines, embedding-similarity and zero-shot figures against values worked out by hand, with chosen vectors.

The exact expectations are also checked against brute force: every ordering of the tied candidates is scored by
sentence-transformers' InformationRetrievalEvaluator (through cellst.retrieval.task_metrics) and averaged.
"""

from __future__ import annotations

import itertools
from math import log2

import numpy as np
import pandas as pd
import pytest

from cellst.baselines import expected_metrics, random_records, tfidf_records, tfidf_scores
from cellst.retrieval import Task, task_metrics
from cellst.similarity import class_prompts, pair_similarity, zero_shot, zero_shot_figures

KEYS = ("accuracy@1", "accuracy@5", "precision@1", "precision@5", "recall@1", "recall@5", "recall@10",
        "mrr@10", "ndcg@10", "map@100", "mean_rank")


def brute_force(scores: np.ndarray, relevant: set[int]) -> dict[str, float]:
    """Mean of the evaluator's figures over every order of each tie group (each order once, equally likely)."""
    groups = [np.flatnonzero(scores == v) for v in sorted(set(scores), reverse=True)]
    rows = []
    for orders in itertools.product(*[itertools.permutations(g) for g in groups]):
        ranked = [c for order in orders for c in order]
        row = np.empty(len(scores))
        row[ranked] = np.arange(len(scores), 0, -1)  # strictly decreasing along the chosen order
        rows.append(row)
    task = Task("text_to_image", "pair", "x", [f"q{i}" for i in range(len(rows))],
                [f"c{j}" for j in range(len(scores))], [relevant] * len(rows))
    return task_metrics(task, np.array(rows))


@pytest.mark.parametrize("n, relevant", [(5, {1, 3}), (6, {0}), (4, {0, 1, 3}), (3, {2})])
def test_random_expectation_equals_enumeration_of_all_permutations(n, relevant):
    expected = expected_metrics(np.zeros(n), relevant)
    enumerated = brute_force(np.zeros(n), relevant)
    for key in KEYS:
        assert expected[key] == pytest.approx(enumerated[key]), key


@pytest.mark.parametrize("scores, relevant", [
    ([3, 2, 2, 2, 1], {2, 4}),  # a relevant item inside a tie group and one below it
    ([5, 5, 4, 4, 4, 1], {0, 3, 4}),  # ties at the top, several relevant in the second group
    ([1, 1, 0, 0], {2}),  # the only relevant item below a tie group
])
def test_tie_aware_expectation_equals_enumeration(scores, relevant):
    scores = np.array(scores, float)
    expected, enumerated = expected_metrics(scores, relevant), brute_force(scores, relevant)
    for key in KEYS:
        assert expected[key] == pytest.approx(enumerated[key]), key


def test_without_ties_expectation_is_the_evaluator_itself():
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.3])
    task = Task("text_to_image", "pair", "x", ["q"], list("abcde"), [{1, 2}])
    direct = task_metrics(task, scores[None])
    for key, value in expected_metrics(scores, {1, 2}).items():
        assert value == pytest.approx(direct[key]), key


def test_random_by_hand_one_relevant_of_four():
    m = expected_metrics(np.zeros(4), {2})
    assert m["accuracy@1"] == pytest.approx(1 / 4)
    assert m["recall@5"] == pytest.approx(1.0) and m["precision@5"] == pytest.approx(1 / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert m["map@100"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)  # one relevant item: AP = 1/rank
    assert m["ndcg@10"] == pytest.approx((1 + 1 / log2(3) + 1 / log2(4) + 1 / log2(5)) / 4)
    assert m["mean_rank"] == pytest.approx(2.5)


def test_ties_by_hand_two_relevant():
    # Order: c0 (0.9), then c1 and c2 tied (0.5), then c3 (0.1). Relevant: c1 and c3.
    m = expected_metrics(np.array([0.9, 0.5, 0.5, 0.1]), {1, 3})
    assert m["accuracy@1"] == pytest.approx(0.0)
    assert m["recall@1"] == pytest.approx(0.0)
    assert m["mrr@10"] == pytest.approx(0.5 * 1 / 2 + 0.5 * 1 / 3)
    assert m["mean_rank"] == pytest.approx(2.5)
    # AP: c1 at rank 2 -> (1/2 + 2/4) / 2; c1 at rank 3 -> (1/3 + 2/4) / 2.
    assert m["map@100"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + (1 / 3 + 2 / 4) / 2) / 2)
    ideal = 1 + 1 / log2(3)
    assert m["ndcg@10"] == pytest.approx(((1 / log2(3) + 1 / log2(4)) / 2 + 1 / log2(5)) / ideal)


# Two images, two descriptors; A's negative caption must never enter a document.
FRAME = pd.DataFrame({
    "image": ["A", "A", "B", "B", "A"],
    "caption": ["large cell", "large nucleus", "small cell", "round nucleus", "small cell"],
    "label": [1.0, 1.0, 1.0, 1.0, 0.0],
    "descriptor": ["size", "nucleus", "size", "nucleus", "size"],
})


def pick(records, direction="text_to_image", rule="pair", scope="non-specific"):
    [r] = [r for r in records if (r["direction"], r["rule"], r["scope"]) == (direction, rule, scope)]
    return r


def test_tfidf_documents_leave_the_descriptor_out():
    captions, images, scores = tfidf_scores(FRAME)
    s = pd.DataFrame(scores, index=captions, columns=images)
    # "large cell" against A's other-descriptor text "large nucleus": one shared word of equal IDF -> cosine 1/2.
    assert s.loc["large cell", "A"] == pytest.approx(0.5)
    assert s.loc["large nucleus", "A"] == pytest.approx(0.5)  # against "large cell"
    # A's own size caption is held out, and its negative "small cell" is never used: no shared word.
    assert s.loc["small cell", "A"] == 0.0
    assert (s["B"] == 0.0).all()  # B's documents ("round nucleus" / "small cell") share no word with held-out queries


def test_tfidf_records_by_hand():
    records = tfidf_records(FRAME)
    t2i = pick(records)["metrics"]
    # large cell -> A first (hit); small cell -> A, B tied (1/2); large nucleus -> A (hit); round nucleus -> tie.
    assert t2i["accuracy@1"] == pytest.approx((1 + 0.5 + 1 + 0.5) / 4)
    assert t2i["mrr@10"] == pytest.approx((1 + 0.75 + 1 + 0.75) / 4)
    i2t = pick(records, "image_to_text")["metrics"]
    # A: "large cell" and "large nucleus" tied on top, one relevant per query -> 1/2; B: all four tied -> 1/4.
    assert i2t["accuracy@1"] == pytest.approx((0.5 + 0.5 + 0.25 + 0.25) / 4)
    assert {r["model"] for r in records} == {"tfidf"}
    assert pick(records, scope="specific")["n_queries"] == 4


def test_tfidf_without_descriptors_leaves_the_caption_out():
    frame = FRAME[FRAME["label"] == 1].drop(columns="descriptor")
    captions, images, scores = tfidf_scores(frame)
    s = pd.DataFrame(scores, index=captions, columns=images)
    # A's document for "large cell" is "large nucleus" (the caption itself left out).
    assert s.loc["large cell", "A"] == pytest.approx(0.5)
    assert s.loc["small cell", "B"] == pytest.approx(0.0)  # B's document "round nucleus"


def test_random_records_match_chance_and_cover_several_relevant():
    records = random_records(FRAME)
    caption_rule = pick(records, rule="caption")  # "small cell" is positive only for B here; one query per text
    assert caption_rule["n_queries"] == 4
    for r in records:
        if r["n_candidates"] is None:
            continue
        for key, value in r["chance"].items():
            assert r["metrics"][key] == pytest.approx(value), (r["scope"], key)
    frame = pd.DataFrame({"image": list("ABCD"), "caption": ["t"] * 4, "label": [1.0, 1.0, 0.0, 0.0]})
    shared = pick(random_records(frame), rule="caption")["metrics"]  # one query, two of four images relevant
    assert shared["accuracy@1"] == pytest.approx(0.5)
    assert shared["mrr@10"] == pytest.approx(1 * 1 / 2 + 1 / 2 * 1 / 3 + 1 / 3 * 1 / 6)
    assert shared["map@100"] == pytest.approx(expected_metrics(np.zeros(4), {0, 1})["map@100"])
    assert shared["mean_rank"] == pytest.approx(5 / 3)


def vectors_at(cosines: dict[str, float]) -> dict[str, np.ndarray]:
    return {name: np.array([c, np.sqrt(1 - c * c)]) for name, c in cosines.items()}


def test_pair_similarity_by_hand():
    frame = pd.DataFrame({"image": list("abcd"), "caption": ["t6", "t0", "t8", "t1"], "label": [1, 0, 0, 1.0]})
    images = {i: np.array([1.0, 0.0]) for i in "abcd"}
    texts = vectors_at({"t6": 0.6, "t0": 0.0, "t8": 0.8, "t1": 1.0})  # cosines .6, 0, .8, 1 with labels 1, 0, 0, 1
    m = pair_similarity(frame, images, texts)
    assert m["pearson"] == pytest.approx(0.4 / np.sqrt(0.56))
    assert m["spearman"] == pytest.approx(2 / np.sqrt(20))
    assert m["accuracy"] == pytest.approx(0.75) and m["accuracy_threshold"] == pytest.approx(0.9)
    assert m["f1"] == pytest.approx(0.8) and m["f1_threshold"] == pytest.approx(0.3)
    assert m["ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["chance"] == {"accuracy": 0.5, "f1": pytest.approx(2 / 3), "ap": 0.5}


def test_pair_similarity_with_a_tie_across_labels():
    frame = pd.DataFrame({"image": list("abcd"), "caption": ["t8", "t8", "t5", "t1"], "label": [1, 0, 1, 0.0]})
    images = {i: np.array([1.0, 0.0]) for i in "abcd"}
    m = pair_similarity(frame, images, vectors_at({"t8": 0.8, "t5": 0.5, "t1": 0.1}))
    assert m["pearson"] == pytest.approx(0.2 / np.sqrt(0.33))
    assert m["spearman"] == pytest.approx(1 / np.sqrt(18))
    assert m["accuracy"] == pytest.approx(0.75) and m["accuracy_threshold"] == pytest.approx(0.3)
    assert m["f1"] == pytest.approx(0.8)
    assert m["ap"] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)  # the tied pair enters as one threshold


def test_pair_similarity_with_one_label_only_is_undefined_not_an_error():
    frame = pd.DataFrame({"image": ["a"], "caption": ["t"], "label": [1.0]})
    m = pair_similarity(frame, {"a": np.array([1.0, 0.0])}, {"t": np.array([1.0, 0.0])})
    assert "pearson" not in m and "note" in m


E = np.eye(3)


def test_zero_shot_by_hand_with_a_tie():
    images = np.array([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8], [0.7, 0.7, 0], [0, 0, 1]])
    truth = ["a", "b", "b", "b", "c"]  # the third is nearer c; the fourth ties a and b, and a tie goes to a
    m = zero_shot_figures(images, truth, E, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["b"] == {"n": 3, "accuracy": pytest.approx(1 / 3)}
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert m["chance"] == pytest.approx(1 / 3)
    assert m["confusion"] == [[1, 0, 0], [1, 1, 1], [0, 0, 1]]


class FakeModel:
    """Returns chosen vectors for the class prompts, as SentenceTransformer.encode would."""

    def __init__(self, vectors):
        self.vectors, self.seen = vectors, []

    def encode(self, texts, **kwargs):
        self.seen += list(texts)
        return np.stack([self.vectors[t] for t in texts])


def test_zero_shot_encodes_one_prompt_per_class():
    frame = pd.DataFrame({"image": ["i1", "i1", "i2", "i3"], "caption": list("wxyz"), "label": [1.0] * 4,
                          "class": ["blast", "blast", "lymphocyte", ""]})
    prompts = class_prompts(["blast", "lymphocyte"], "{class} here")
    model = FakeModel(dict(zip(prompts, E[:2])))
    m = zero_shot(model, frame, {"i1": E[1], "i2": E[1], "i3": E[0]}, "{class} here")
    assert model.seen == ["blast here", "lymphocyte here"]
    assert m["n_images"] == 2  # i3 has no class
    assert m["accuracy"] == pytest.approx(0.5) and m["template"] == "{class} here"
    assert zero_shot(model, frame.drop(columns="class"), {}, "{class}") is None


def test_picture_data_by_hand():
    from cellst.similarity import class_matrix, pair_matrix, top_images

    frame = pd.DataFrame({"image": ["A", "B", "C", "B"], "caption": ["t", "u", "t", "t"], "label": [1, 1, 1, 0.0],
                          "descriptor": ["d"] * 4, "class": ["x", "y", "x", "y"]})
    images = {"A": np.array([0.2, 0.98]), "B": np.array([0.9, 0.436]), "C": np.array([0.5, 0.866])}
    texts = {"t": np.array([1.0, 0.0]), "u": np.array([0.0, 1.0])}
    [row] = top_images(frame, images, texts, n=1, k=3)
    assert [h["image"] for h in row["hits"]] == ["B", "C", "A"]  # cosines .9, .5, .2
    assert [h["correct"] for h in row["hits"]] == [False, True, True]  # "t" is a positive of A and C, not of B
    pairs = pair_matrix(frame, images, texts, n=3)
    assert len(pairs["col_labels"]) == 3 and len(set(pairs["col_labels"])) == 3  # one pair per image
    assert all((r, r) in pairs["marks"] for r in range(3))  # the sampled pairs sit on the diagonal
    by_class = class_matrix(frame, images)
    assert by_class["groups"] == [("x", 0, 2), ("y", 2, 3)] and by_class["row_labels"] == ["A", "C", "B"]
    assert by_class["matrix"][0, 1] == pytest.approx(0.2 * 0.5 + 0.98 * 0.866)
