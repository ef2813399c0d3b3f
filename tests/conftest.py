"""Shared fixtures: small random networks of the kinds the papers use."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from hypothesis import settings

import fliplib

# Tests check correctness, never speed: no per-example deadline (hypothesis' default of 200 ms
# fails whichever example first compiles a TensorFlow function on a busy machine).  The examples
# are derived from each test's name (derandomize), so every run, on CI and here, tries the same
# ones: a failure is reproduced by running the test again, not by luck.
settings.register_profile("fliplib", deadline=None, derandomize=True)
settings.load_profile("fliplib")


@pytest.fixture(scope="session")
def small_erf():
    """A 3-hidden-layer erf network on 6 features and 4 classes (random weights, seed 0)."""
    return fliplib.erf_network([6, 16, 16, 16, 4], sigma=1.0, seed=0)


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(12345)
