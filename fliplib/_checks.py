"""Checks of the inputs and options shared by the public functions: a precise error naming the argument.

Every public function of fliplib validates its arguments here, so that one kind of argument
is checked (and refused) the same way everywhere:

- options: :func:`positive_number`, :func:`positive_int`, :func:`choice`;
- points: :func:`check_points` (``x`` as an ``(n, d)`` float64 array of finite numbers);
- the box of eq. 5: :func:`as_bounds` (``lower`` / ``upper`` broadcast to ``(n, d)``),
  :func:`check_within_bounds`;
- masks and weights: :func:`as_mask` (``fixed``), :func:`check_feature_weights`;
- all of the above at once for a batch of problems: :func:`check_inputs`;
- class indices: :func:`whole_numbers`, :func:`check_class_range`, :func:`class_indices`,
  :func:`check_distinct`.

This module imports nothing of fliplib: every other module may use it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "positive_number",
    "positive_int",
    "choice",
    "numbers",
    "per_feature",
    "check_points",
    "as_bounds",
    "check_within_bounds",
    "as_mask",
    "check_feature_weights",
    "check_inputs",
    "whole_numbers",
    "check_class_range",
    "class_indices",
    "check_distinct",
]


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


#: Inputs of flip-point problems beyond this magnitude are refused: their squared distances overflow.
LARGEST = 1e150


def positive_number(name: str, value, *, allow_inf: bool = False) -> float:
    """``value`` as a positive (and finite, unless ``allow_inf``) float; a ValueError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number > 0 or not (allow_inf or math.isfinite(number)):
        raise ValueError(f"{name} must be a positive{'' if allow_inf else ' finite'} number, got {value!r}")
    return number


def positive_int(name: str, value, *, allow_zero: bool = False) -> int:
    """``value`` as a positive (or, with ``allow_zero``, non-negative) int; a ValueError naming
    ``name`` otherwise (floats and bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
    return int(value)


def choice(name: str, value, allowed) -> object:
    """``value`` if it is one of ``allowed`` (compared with ``==``); a ValueError naming ``name`` otherwise."""
    allowed = tuple(allowed)
    if isinstance(value, (list, dict, set, np.ndarray)) or not any(value is a or value == a for a in allowed):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Arrays of numbers
# --------------------------------------------------------------------------------------------


def numbers(name: str, value) -> np.ndarray:
    """``value`` as a float64 array, refusing what is not made of real numbers.

    Raises
    ------
    ValueError
        If ``value`` is a ragged nest of sequences (rows of different lengths).
    TypeError
        If it holds strings, bools, complex numbers or other objects.
    """
    try:
        arr = np.asarray(value)
    except ValueError:  # NumPy >= 1.24 refuses ragged nests
        raise ValueError(f"{name} must be a rectangular array of numbers, got a ragged sequence (rows of different lengths)") from None
    if arr.dtype == object:
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in arr.flat):
            raise ValueError(f"{name} must be a rectangular array of numbers, got a ragged sequence (rows of different lengths)")
        try:
            if any(isinstance(v, (str, bytes, bool, np.bool_)) for v in arr.flat):
                raise TypeError
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold real numbers, got {value!r:.80}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def per_feature(name: str, value, n_features: int) -> np.ndarray:
    """``value`` as a finite float64 array ``(n_features,)``; a number is repeated."""
    arr = numbers(name, value)
    if arr.ndim == 0:
        arr = np.full(n_features, float(arr))
    if arr.shape != (n_features,):
        raise ValueError(f"{name} must be a number or have shape ({n_features},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or inf values")
    return arr


def check_points(name: str, value, n_features: int) -> np.ndarray:
    """``value`` as the points of a batch: a finite float64 array of shape ``(n, n_features)``.

    A single point of shape ``(n_features,)`` becomes one row.

    Raises
    ------
    ValueError
        If the shape is wrong, the rows are ragged, or an entry is NaN or inf (the first is named).
    TypeError
        If ``value`` does not hold real numbers (strings, bools, complex numbers, ...).
    """
    x = numbers(name, value)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (n, {n_features}) for this network, got {np.shape(value)}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} holds NaN or inf values (first at input {bad[0]}, feature {bad[1]})")
    return x


def as_bounds(name: str, value, n: int, d: int, default: float) -> np.ndarray:
    """``lower`` or ``upper`` of eq. 5 as an ``(n, d)`` float64 array (a new one).

    Parameters
    ----------
    name : str
        The argument's name, for errors.
    value : None, float, or array of shape (d,) or (n, d)
        One bound for everything, one per feature, or one per input and feature.
    n, d : int
        Inputs and features.
    default : float
        The bound where ``value`` is None (``-inf`` or ``inf``).

    Raises
    ------
    TypeError
        If ``value`` is not made of numbers (``lower="a"``).
    ValueError
        If its shape is none of the above, or it holds NaN.
    """
    if value is None:
        return np.full((n, d), default)
    arr = numbers(name, value)
    if arr.ndim == 0:
        arr = np.full((n, d), float(arr))
    elif arr.shape == (d,):
        arr = np.broadcast_to(arr, (n, d)).copy()
    elif arr.shape != (n, d):
        raise ValueError(f"{name} must be a scalar, shape ({d},) or ({n}, {d}); got {arr.shape}")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} holds NaN values")
    return arr


def check_within_bounds(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``x`` moved onto its bounds where rounding left it just outside; an error if farther out.

    Rounding (a transform that lands on a bound) is forgiven up to 1e-12 relative to the bound.

    Raises
    ------
    ValueError
        If ``lo > hi`` somewhere, or an input lies outside ``[lo, hi]`` (naming the first input,
        feature, value and bounds).
    """
    if np.any(lo > hi):
        raise ValueError("lower exceeds upper for some feature")
    scale = np.maximum(np.abs(np.where(np.isfinite(lo), lo, 0.0)), np.abs(np.where(np.isfinite(hi), hi, 0.0)))
    slack = 1e-12 * np.maximum(1.0, scale)
    outside = (x < lo - slack) | (x > hi + slack)
    if np.any(outside):
        i, f = np.argwhere(outside)[0]
        raise ValueError(
            f"input {i} lies outside its bounds at feature {f}: {x[i, f]} not in "
            f"[{lo[i, f]}, {hi[i, f]}] ({int(outside.any(axis=1).sum())} inputs are outside)"
        )
    return np.clip(x, lo, hi)


def as_mask(name: str, value, n: int, d: int) -> np.ndarray:
    """A boolean mask (``fixed``) of shape ``(d,)`` or ``(n, d)`` as an ``(n, d)`` array (False if None).

    Raises
    ------
    TypeError
        If ``value`` is not boolean.
    ValueError
        If its shape is neither.
    """
    if value is None:
        return np.zeros((n, d), dtype=bool)
    try:
        mask = np.asarray(value)
    except ValueError:  # a ragged nest
        raise ValueError(f"{name} must have shape ({d},) or ({n}, {d}), got a ragged sequence") from None
    if mask.dtype != bool:
        raise TypeError(f"{name} must be a boolean mask, got dtype {mask.dtype}")
    if mask.shape not in ((d,), (n, d)):
        raise ValueError(f"{name} must have shape ({d},) or ({n}, {d}), got {np.shape(value)}")
    return np.broadcast_to(mask, (n, d))


def check_feature_weights(value, d: int) -> np.ndarray:
    """The weights ``w`` of the distance ``sqrt(sum w (x_hat - x)^2)``: ``d`` positive finite numbers.

    ``None`` gives ones, and one number is repeated (:func:`per_feature`).
    """
    if value is None:
        return np.ones(d)
    message = f"feature_weights must be {d} positive finite numbers"
    try:
        w = per_feature("feature_weights", value, d)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if np.any(w <= 0):
        raise ValueError(message)
    return w


def check_inputs(n_features: int, x, lower, upper, fixed, feature_weights):
    """The inputs of a batch of flip-point problems (eqs. 1-5), checked and broadcast.

    Parameters
    ----------
    n_features : int
        The network's input size.
    x, lower, upper, fixed, feature_weights
        As for :func:`fliplib.closest_flip_points`.

    Returns
    -------
    x : ndarray, shape (n, d)
        The inputs, moved onto a bound where rounding left them just outside.
    lo, hi : ndarray, shape (n, d)
        The bounds, equal to ``x`` at the fixed features.
    w : ndarray, shape (d,)
        The feature weights.
    """
    x = check_points("x", x, n_features)
    if np.any(np.abs(x) > LARGEST):
        raise ValueError(f"x holds values beyond {LARGEST:g} in magnitude (up to {np.abs(x).max():g}): "
                         "their squared distances overflow float64")
    n, d = x.shape
    lo = as_bounds("lower", lower, n, d, -np.inf)
    hi = as_bounds("upper", upper, n, d, np.inf)
    x = check_within_bounds(x, lo, hi)
    if fixed is not None:
        mask = as_mask("fixed", fixed, n, d)
        lo = np.where(mask, x, lo)
        hi = np.where(mask, x, hi)
    return x, lo, hi, check_feature_weights(feature_weights, d)


# --------------------------------------------------------------------------------------------
# Class indices
# --------------------------------------------------------------------------------------------


def whole_numbers(name: str, value) -> np.ndarray:
    """``value`` as an array, if it holds whole numbers (integers, or floats without fraction).

    Raises
    ------
    TypeError
        If it holds bools, strings, or floats with a fraction (or NaN).
    """
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr) & (np.mod(arr, 1) == 0)):
        raise TypeError(f"{name} must hold integer class indices, got {arr.dtype} values that are not whole numbers")
    return arr


def check_class_range(name: str, arr: np.ndarray, n_classes: int) -> np.ndarray:
    """``arr`` as int64 if every entry lies in ``[0, n_classes)``; a ValueError naming ``name`` otherwise."""
    bad = (arr < 0) | (arr >= n_classes)
    if np.any(bad):
        raise ValueError(f"{name} classes must lie in [0, {n_classes}), got {np.unique(arr[bad])}")
    return arr.astype(np.int64)


def class_indices(name: str, value, n: int, n_classes: int) -> np.ndarray:
    """``value`` (a class index, or one per input) as ``n`` checked int64 class indices."""
    arr = whole_numbers(name, value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a class index or an array of shape ({n},), got shape {arr.shape}")
    return check_class_range(name, arr, n_classes)


def check_distinct(src: np.ndarray, tgt: np.ndarray) -> None:
    """Refuse a target equal to its source class: ``src`` of shape (n,), ``tgt`` of shape (n, r)."""
    same = tgt == src[:, None]
    if np.any(same):
        i = int(np.argwhere(same)[0, 0])
        raise ValueError(
            f"target equals the source class (i == j == {int(src[i])}) for input {i}; a flip point needs "
            "two different classes (use target='all' to skip the source automatically)"
        )
