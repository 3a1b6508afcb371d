"""Recall figures against values worked out by hand, with chosen vectors instead of a model."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from cellst.evaluation import score_split
from cellst.retrieval import Task, chance_metrics, task_metrics

# Three images and three captions on the unit circle, so cosine = dot product.
IMAGES = {"A": np.array([1.0, 0.0]), "B": np.array([0.0, 1.0]), "C": np.array([0.6, 0.8])}
TEXTS = {"x": np.array([0.8, 0.6]), "y": np.array([0.0, 1.0]), "z": np.array([-1.0, 0.0])}
# Scores text->image:  x: A .8, B .6, C .96 (order C A B);  y: A 0, B 1, C .8 (order B C A)
FRAME = pd.DataFrame({
    "image": ["A", "B", "C", "A"],
    "caption": ["x", "y", "x", "z"],
    "label": [1.0, 1.0, 1.0, 0.0],
    "descriptor": ["size", "shape", "size", "size"],
})


def record(records, direction="text_to_image", rule="pair", scope="non-specific"):
    [r] = [r for r in records if (r["direction"], r["rule"], r["scope"]) == (direction, rule, scope)]
    return r


def test_pair_rule_text_to_image_by_hand():
    r = record(score_split(FRAME, IMAGES, TEXTS))
    m = r["metrics"]
    # Queries: x->A (rank 2), y->B (rank 1), x->C (rank 1).
    assert r["n_queries"] == 3 and r["n_candidates"] == 3
    assert m["accuracy@1"] == pytest.approx(2 / 3)
    assert m["recall@1"] == pytest.approx(2 / 3)
    assert m["accuracy@5"] == pytest.approx(1.0)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert m["mean_rank"] == pytest.approx(4 / 3)
    assert m["median_rank"] == 1
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1 + 1) / 3)


def test_caption_rule_counts_every_image_the_caption_describes():
    m = record(score_split(FRAME, IMAGES, TEXTS), rule="caption")["metrics"]
    # Queries: x (relevant A and C: ranked 2nd and 1st), y (relevant B: 1st).
    assert m["accuracy@1"] == pytest.approx(1.0)
    assert m["recall@1"] == pytest.approx((1 / 2 + 1) / 2)  # recall divides by the number relevant
    assert m["precision@1"] == pytest.approx(1.0)
    assert m["map@100"] == pytest.approx(1.0)


def test_caption_rule_counts_other_phrasings_of_the_same_value():
    # x and y both state size=large (different words); A is captioned x, B is captioned y, C states nothing true.
    frame = pd.DataFrame({"image": ["A", "B", "C"], "caption": ["x", "y", "z"], "label": [1.0, 1.0, 0.0],
                          "descriptor": ["size"] * 3, "value": ["large", "large", "large"]})
    images = {"A": np.array([1.0, 0.0]), "B": np.array([0.0, 1.0]), "C": np.array([0.6, 0.8])}
    # Query x: A .8, B .6, C .96 -> C, A, B; query y: B 1, C .8, A 0 -> B, C, A.  z is a negative, never a query.
    m = record(score_split(frame, images, TEXTS), rule="caption")["metrics"]
    assert m["accuracy@1"] == pytest.approx(1 / 2)  # y's top image B is relevant; x's top image C is not
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    # z states size=large too, but only as C's negative: C is not known to be large, so C stays irrelevant.
    plain = record(score_split(frame.drop(columns="value"), images, TEXTS), rule="caption")["metrics"]
    assert plain["recall@5"] == pytest.approx(1.0)  # without values each query has only its own image
    assert m["recall@5"] == pytest.approx(1.0) and m["recall@1"] == pytest.approx((0 + 1 / 2) / 2)


def test_a_text_stated_with_two_values_counts_only_as_itself():
    from cellst.data import known_true

    frame = pd.DataFrame({"image": ["A", "B", "C"], "caption": ["x", "x", "y"], "label": [1, 1, 1],
                          "descriptor": ["size"] * 3, "value": ["large", "small", "large"]})
    true = known_true(frame, ["A", "B", "C"], ["x", "y", "never seen"])
    # x is annotated both large and small, so it links to no value: true of its own images only; y stays large.
    assert true.tolist() == [[True, False, False], [True, False, False], [False, True, False]]


def test_image_to_text_includes_negative_only_captions_as_candidates():
    r = record(score_split(FRAME, IMAGES, TEXTS), direction="image_to_text")
    assert r["n_candidates"] == 3  # x, y, z
    # A -> x: scores x .8, y 0, z -1 -> rank 1; B -> y: rank 1; C -> x: x .96, y .8 -> rank 1
    assert r["metrics"]["accuracy@1"] == pytest.approx(1.0)


def test_specific_scope_limits_candidates_to_the_descriptor():
    records = score_split(FRAME, IMAGES, TEXTS)
    size = record(records, scope="specific:size")
    # Candidates for "size": images with a size row (A, C). x->A: C .96 beats A .8 -> rank 2; x->C rank 1.
    assert size["n_candidates"] == 2 and size["n_queries"] == 2
    assert size["metrics"]["accuracy@1"] == pytest.approx(0.5)
    shape = record(records, scope="specific:shape")
    assert shape["n_candidates"] == 1 and shape["metrics"]["accuracy@1"] == 1.0  # only B: trivially first
    overall = record(records, scope="specific")
    assert overall["n_queries"] == 3
    assert overall["metrics"]["accuracy@1"] == pytest.approx((0.5 * 2 + 1.0 * 1) / 3)


def test_ties_are_broken_by_candidate_order():
    images = {"A": np.array([1.0, 0.0]), "B": np.array([0.0, 1.0])}
    texts = {"t": np.array([1.0, 1.0]) / np.sqrt(2)}
    frame = pd.DataFrame({"image": ["A", "B"], "caption": ["t", "t"], "label": [1.0, 1.0]})
    m = record(score_split(frame, images, texts, rules=("pair",)))["metrics"]
    # Equal scores: A (listed first) ranks 1, B ranks 2, for both queries.
    assert m["accuracy@1"] == pytest.approx(0.5)
    assert m["mean_rank"] == pytest.approx(1.5)


def test_no_descriptor_column_gives_only_non_specific():
    frame = FRAME.drop(columns="descriptor")
    scopes = {r["scope"] for r in score_split(frame, IMAGES, TEXTS)}
    assert scopes == {"non-specific"}


@pytest.mark.parametrize("n,r", [(5, 1), (5, 2), (6, 3)])
def test_chance_is_the_exact_expectation_over_all_rankings(n, r):
    task = Task("text_to_image", "caption", "x", ["q"], [str(i) for i in range(n)], [set(range(r))])
    expected = {"accuracy@1": [], "accuracy@5": [], "recall@1": [], "mrr@10": [], "mean_rank": []}
    for perm in itertools.permutations(range(n)):
        scores = np.array([[n - perm.index(j) for j in range(n)]], float)  # candidate perm[0] scores highest
        m = task_metrics(task, scores)
        for key in expected:
            expected[key].append(m[key])
    chance = chance_metrics(task)
    for key, values in expected.items():
        assert chance[key] == pytest.approx(np.mean(values)), key
