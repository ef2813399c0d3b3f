"""Checks of scalar options shared by the public functions: a precise error naming the option."""

from __future__ import annotations

import math

import numpy as np


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
