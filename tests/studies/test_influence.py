"""Tests of fliplib.studies.influence: nearest flip classes, subsets by distance, retraining, synthetic points."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fliplib
from fliplib.studies.influence import (
    alternate_label_found,
    distance_subsets,
    nearest_flip_classes,
    subset_accuracies,
)

settings_fast = settings(max_examples=40, deadline=None)

distance_rows = arrays(
    float,
    st.tuples(st.integers(1, 8), st.integers(2, 6)),
    elements=st.one_of(st.floats(0, 10, allow_nan=False), st.just(np.inf)),
)
distance_vectors = arrays(float, st.integers(1, 40), elements=st.floats(0, 10, allow_nan=False))


# ------------------------------------------------------------------ nearest flip classes


@settings_fast
@given(d=distance_rows)
def test_nearest_flip_classes_marks_the_minimum_and_nothing_farther(d):
    nearest = nearest_flip_classes(d, decimals=None)
    finite = np.isfinite(d).any(axis=1)
    assert np.array_equal(nearest.any(axis=1), finite)
    for row, mask in zip(d[finite], nearest[finite]):
        assert mask[np.argmin(row)]
        assert np.all(row[mask] == row.min())


def test_rounding_makes_near_ties_count():
    d = np.array([[0.50001, 0.50004, 0.7, np.inf]])
    assert nearest_flip_classes(d, decimals=None).tolist() == [[True, False, False, False]]
    assert nearest_flip_classes(d, decimals=4).tolist() == [[True, True, False, False]]


def test_alternate_label_found_reads_the_label_column():
    d = np.array([[np.inf, 0.2, 0.9], [0.3, np.inf, 0.3], [np.inf, np.inf, np.inf]])
    found = alternate_label_found(d, [1, 2, 0])
    assert found.tolist() == [True, True, False]
    assert alternate_label_found(d, [2, 1, 1]).tolist() == [False, False, False]


@pytest.mark.parametrize(
    "d, labels, match",
    [
        (np.ones((2, 3)), [0], "labels must have shape"),
        (np.ones((2, 3)), [0, 3], "labels must lie"),
        (np.ones(3), [0, 1, 2], "2-D"),
        (-np.ones((2, 3)), [0, 1], "non-negative"),
        (np.full((2, 3), np.nan), [0, 1], "non-negative"),
    ],
)
def test_alternate_label_found_rejects_bad_input(d, labels, match):
    with pytest.raises(ValueError, match=match):
        alternate_label_found(d, np.asarray(labels))


# ------------------------------------------------------------------ subsets by distance


@settings_fast
@given(d=distance_vectors, data=st.data())
def test_distance_subsets_split_the_order(d, data):
    size = data.draw(st.integers(1, len(d)))
    subsets = distance_subsets(d, size, n_random=3, seed=1)
    assert set(subsets) == {"closest", "random", "farthest"}
    assert len(subsets["random"]) == 3
    for group in subsets.values():
        for idx in group:
            assert len(np.unique(idx)) == size and idx.min() >= 0 and idx.max() < len(d)
    closest, farthest = subsets["closest"][0], subsets["farthest"][0]
    rest = np.setdiff1d(np.arange(len(d)), closest)
    assert rest.size == 0 or d[closest].max() <= d[rest].min()
    rest = np.setdiff1d(np.arange(len(d)), farthest)
    assert rest.size == 0 or d[farthest].min() >= d[rest].max()


def test_distance_subsets_treat_missing_flip_points_as_farthest_and_reproduce_random_draws():
    d = np.array([0.3, np.inf, 0.1, 0.2, 5.0])
    subsets = distance_subsets(d, 2, n_random=2, seed=7)
    assert subsets["closest"][0].tolist() == [2, 3]
    assert subsets["farthest"][0].tolist() == [1, 4]
    again = distance_subsets(d, 2, n_random=2, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(subsets["random"], again["random"]))


@pytest.mark.parametrize("size, n_random", [(0, 1), (6, 1), (2.0, 1), (2, -1)])
def test_distance_subsets_reject_bad_sizes(size, n_random):
    with pytest.raises(ValueError):
        distance_subsets(np.arange(5.0), size, n_random=n_random)


# ------------------------------------------------------------------ retraining


def test_subset_accuracies_trains_one_network_per_subset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(int)
    subsets = {"closest": [], "random": [np.arange(20), np.arange(20, 50)]}
    frame = subset_accuracies(
        lambda s: fliplib.erf_network([2, 8, 2], seed=s), x, y, subsets, x, y, epochs=8, batch_size=4,
        learning_rate=2e-2,
    )
    assert frame["kind"].tolist() == ["random", "random"]
    assert frame["trial"].tolist() == [0, 1]
    assert frame["size"].tolist() == [20, 30]
    assert frame["train accuracy"].between(0, 1).all()
    assert frame["test accuracy"].between(0, 1).all()
    # A linearly separable problem: the networks learn it (chance would be about one half).
    assert frame["test accuracy"].min() > 0.8


def test_subset_accuracies_rejects_indices_outside_the_pool():
    x, y = np.zeros((5, 2)), np.zeros(5, dtype=int)
    with pytest.raises(ValueError, match="indices into x"):
        subset_accuracies(lambda s: fliplib.erf_network([2, 2], seed=s), x, y, {"bad": [np.array([7])]}, x, y,
                          epochs=1)


# ------------------------------------------------------------------ synthetic points


