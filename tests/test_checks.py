import math

import numpy as np
import pytest

from fliplib._checks import (
    as_bounds,
    as_mask,
    check_distinct,
    check_feature_weights,
    check_inputs,
    check_points,
    choice,
    class_indices,
    per_feature,
    positive_int,
    positive_number,
)


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_positive_integers(value):
    assert positive_int("n", value) == int(value) and isinstance(positive_int("n", value), int)


@pytest.mark.parametrize("value", [0, -1, 2.0, 2.5, True, "3", None, np.float64(4.0)])
def test_positive_int_names_the_option(value):
    with pytest.raises(ValueError, match="^n must be a positive integer"):
        positive_int("n", value)


@pytest.mark.parametrize("value", [1e-300, 0.5, 3, np.float32(2.0)])
def test_positive_number_accepts_positive_numbers(value):
    assert positive_number("tol", value) == float(value)


@pytest.mark.parametrize("value", [0.0, -1e-9, math.nan, math.inf, True, "x", None, [1.0]])
def test_positive_number_names_the_option(value):
    with pytest.raises(ValueError, match="^tol must be a positive finite number"):
        positive_number("tol", value)


def test_positive_number_may_allow_infinity():
    assert positive_number("tol", math.inf, allow_inf=True) == math.inf
    with pytest.raises(ValueError, match="^tol must be a positive number"):
        positive_number("tol", math.nan, allow_inf=True)


def test_positive_int_may_allow_zero():
    assert positive_int("k", 0, allow_zero=True) == 0
    for value in (-1, 1.0, False):
        with pytest.raises(ValueError, match="^k must be a non-negative integer"):
            positive_int("k", value, allow_zero=True)


@pytest.mark.parametrize("value", ["a", ["a", "b"], [1.0, "b"], [True, False], [1j, 2.0], {"a": 1}])
def test_bounds_must_be_numbers(value):
    with pytest.raises(TypeError, match="^lower must hold real numbers"):
        as_bounds("lower", value, 2, 2, -np.inf)


def test_bounds_broadcast_to_every_input():
    np.testing.assert_array_equal(as_bounds("upper", None, 2, 3, np.inf), np.full((2, 3), np.inf))
    np.testing.assert_array_equal(as_bounds("upper", 4, 2, 3, np.inf), np.full((2, 3), 4.0))
    np.testing.assert_array_equal(as_bounds("upper", [1, 2, 3], 2, 3, np.inf), [[1, 2, 3], [1, 2, 3]])
    per_input = np.arange(6.0).reshape(2, 3)
    out = as_bounds("upper", per_input, 2, 3, np.inf)
    np.testing.assert_array_equal(out, per_input)
    assert out is not per_input
    with pytest.raises(ValueError, match=r"^upper must be a scalar, shape \(3,\) or \(2, 3\)"):
        as_bounds("upper", [1.0, 2.0], 2, 3, np.inf)
    with pytest.raises(ValueError, match="^upper holds NaN"):
        as_bounds("upper", [1.0, np.nan, 2.0], 2, 3, np.inf)
    with pytest.raises(ValueError, match="^upper must be a rectangular array"):
        as_bounds("upper", [[1.0, 2.0, 3.0], [1.0]], 2, 3, np.inf)


@pytest.mark.parametrize(
    "value, error, match",
    [
        ([[0.0, 1.0], [2.0]], ValueError, "^x must be a rectangular array of numbers"),
        ([[0.0, [1.0, 2.0]]], ValueError, "^x must be a rectangular array of numbers"),
        (np.array([["a", "b"]]), TypeError, "^x must hold real numbers"),
        ([["0.5", "1"]], TypeError, "^x must hold real numbers"),
        (np.array([[True, False]]), TypeError, "^x must hold real numbers"),
        (np.array([[1j, 0.0]]), TypeError, "^x must hold real numbers"),
        (np.zeros((2, 3)), ValueError, r"^x must have shape \(n, 2\)"),
        (np.array([[0.0, np.inf]]), ValueError, r"^x holds NaN or inf values \(first at input 0, feature 1\)"),
    ],
)
def test_points_are_checked_and_named(value, error, match):
    with pytest.raises(error, match=match):
        check_points("x", value, 2)


def test_points_accept_integers_one_point_and_object_arrays_of_numbers():
    np.testing.assert_array_equal(check_points("x", [1, 2], 2), [[1.0, 2.0]])
    x = check_points("x", np.array([[1, 2.5]], dtype=object), 2)
    assert x.dtype == np.float64 and x.shape == (1, 2)


def test_inputs_outside_their_bounds_are_named_and_rounding_is_forgiven():
    x, lo, hi, w = check_inputs(2, [[0.0, 1.0 + 1e-14]], 0.0, 1.0, None, None)
    assert x[0, 1] == 1.0 and np.all(w == 1.0)
    with pytest.raises(ValueError, match=r"^input 0 lies outside its bounds at feature 1: 1.5 not in \[0.0, 1.0\]"):
        check_inputs(2, [[0.0, 1.5]], 0.0, 1.0, None, None)
    with pytest.raises(ValueError, match="lower exceeds upper"):
        check_inputs(2, [[0.0, 0.5]], 1.0, 0.0, None, None)
    x, lo, hi, _ = check_inputs(2, [[0.25, 0.5]], 0.0, 1.0, np.array([True, False]), None)
    assert lo[0, 0] == hi[0, 0] == 0.25 and (lo[0, 1], hi[0, 1]) == (0.0, 1.0)


def test_masks_and_weights_are_checked():
    assert as_mask("fixed", None, 2, 3).shape == (2, 3)
    with pytest.raises(TypeError, match="^fixed must be a boolean mask"):
        as_mask("fixed", [1, 0, 1], 2, 3)
    with pytest.raises(ValueError, match=r"^fixed must have shape \(3,\) or \(2, 3\)"):
        as_mask("fixed", [True, False], 2, 3)
    with pytest.raises(ValueError, match=r"^fixed must have shape \(3,\) or \(2, 3\), got a ragged"):
        as_mask("fixed", [[True, False, True], [True]], 2, 3)
    for bad in ([1.0, 0.0], [1.0, np.inf], [1.0, -2.0], [1.0], "ab", [1.0, "a"]):
        with pytest.raises(ValueError, match="^feature_weights must be 2 positive finite numbers"):
            check_feature_weights(bad, 2)
    np.testing.assert_array_equal(check_feature_weights(2.0, 3), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(check_feature_weights(None, 2), [1.0, 1.0])


def test_class_indices_are_whole_numbers_in_range():
    np.testing.assert_array_equal(class_indices("target", 2.0, 3, 4), [2, 2, 2])
    for bad, error in ((1.5, TypeError), (True, TypeError), ("1", TypeError), (4, ValueError), (-1, ValueError),
                       ([0, 1], ValueError)):
        with pytest.raises(error, match="^target"):
            class_indices("target", bad, 3, 4)
    with pytest.raises(ValueError, match="i == j == 1"):
        check_distinct(np.array([0, 1]), np.array([[1], [1]]))


def test_choice_names_the_option():
    assert choice("output", "softmax", ("logits", "softmax")) == "softmax"
    with pytest.raises(ValueError, match="^output must be one of 'logits', 'softmax'; got 'probits'"):
        choice("output", "probits", ("logits", "softmax"))


def test_per_feature_repeats_a_number_and_refuses_other_shapes_and_non_finite_values():
    np.testing.assert_array_equal(per_feature("scale", 2, 3), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(per_feature("scale", [1, 2, 3], 3), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"scale must be a number or have shape \(3,\)"):
        per_feature("scale", np.ones((1, 3)), 3)
    with pytest.raises(ValueError, match="shift holds NaN or inf"):
        per_feature("shift", [0.0, np.inf, 0.0], 3)
    with pytest.raises(TypeError, match="shift must hold real numbers"):
        per_feature("shift", ["a", "b", "c"], 3)
