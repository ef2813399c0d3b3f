import math

import numpy as np
import pytest

from fliplib._checks import positive_int, positive_number


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
