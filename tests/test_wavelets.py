"""Tests of fliplib.wavelets: exact round trips, isometry, the pivoted-QR selection, errors."""

from __future__ import annotations

import os
from contextlib import nullcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fliplib.wavelets import NotFittedError, WaveletFeatures, gram_pivots, qr_pivots

MNIST = "/work/shared/data/mnist.npz"


def random_images(shape, n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, *shape))


# Small image shapes, with their transform dimension; odd sizes included (they need padding).
image_cases = st.one_of(
    st.tuples(st.integers(2, 9), st.integers(2, 9)).map(lambda s: (s, 2)),
    st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(1, 3)).map(lambda s: (s, 2)),
    st.tuples(st.integers(2, 8), st.integers(2, 8), st.integers(2, 4)).map(lambda s: (s, 3)),
)
wavelets = st.sampled_from(["haar", "db2", "coif1", "bior2.2"])
settings_fast = settings(max_examples=30, deadline=None)


# --------------------------------------------------------------- round trip and isometry


@pytest.mark.filterwarnings("ignore:Level value")  # pywt on images smaller than the filter
@settings_fast
@given(case=image_cases, wavelet=wavelets, seed=st.integers(0, 2**16))
def test_round_trip_with_all_coefficients_is_exact(case, wavelet, seed):
    shape, ndim = case
    x = random_images(shape, seed=seed)
    features = WaveletFeatures(None, wavelet=wavelet, ndim=ndim).fit(x)
    coefficients = features.transform(x)
    assert coefficients.shape == (3, features.n_all_coefficients_)
    assert coefficients.dtype == np.float64
    np.testing.assert_array_equal(features.indices_, np.arange(features.n_all_coefficients_))
    np.testing.assert_allclose(features.to_pixels(coefficients), x, rtol=0, atol=1e-12 * 255)


@pytest.mark.filterwarnings("ignore:Level value")
@settings_fast
@given(case=image_cases, wavelet=wavelets, seed=st.integers(0, 2**16))
def test_isometric_transforms_preserve_distances(case, wavelet, seed):
    shape, ndim = case
    x = random_images(shape, seed=seed)
    features = WaveletFeatures(None, wavelet=wavelet, ndim=ndim).fit(x)
    if features.isometric_:
        c = features.transform(x)
        assert features.n_all_coefficients_ == x[0].size
        assert np.linalg.norm(c[0] - c[1]) == pytest.approx(np.linalg.norm(x[0] - x[1]), rel=1e-12)


@pytest.mark.parametrize(
    ("shape", "ndim", "wavelet", "mode"),
    [
        ((8, 8, 3), 3, "haar", "periodization"),
        ((5, 7), 2, "haar", "periodization"),
        ((16, 16), 2, "db2", "symmetric"),
        ((16, 16), 2, "bior2.2", "periodization"),
    ],
)
def test_transforms_flagged_not_isometric_change_distances(shape, ndim, wavelet, mode):
    x = random_images(shape)
    features = WaveletFeatures(None, wavelet=wavelet, ndim=ndim, mode=mode).fit(x)
    np.testing.assert_allclose(features.to_pixels(features.transform(x)), x, atol=1e-12 * 255)
    c = features.transform(x)
    assert not features.isometric_
    assert abs(np.linalg.norm(c[0] - c[1]) - np.linalg.norm(x[0] - x[1])) > 1e-6


@pytest.mark.parametrize(
    ("shape", "ndim", "level", "n_all", "isometric"),
    [
        ((28, 28), 2, 2, 784, True),  # MNIST: 784 features (sec. 6.1)
        ((32, 32, 3), 2, 5, 3072, True),  # CIFAR-10, 2-D per channel (sec. 6.2)
        ((32, 32, 3), 3, 1, 4096, False),  # CIFAR-10, 3-D: the 4096 of fig. 1 of the boundaries paper
        ((8, 8, 3), 3, 1, 256, False),
    ],
)
def test_default_level_and_coefficient_count(shape, ndim, level, n_all, isometric):
    features = WaveletFeatures(None, ndim=ndim).fit(np.zeros((1, *shape)))
    assert (features.level_, features.n_all_coefficients_, features.isometric_) == (level, n_all, isometric)
    assert features.image_shape_ == shape


def test_dmey_is_not_flagged_isometric():
    """PyWavelets calls dmey orthogonal, but its FIR filter is so only to about 2e-3."""
    assert not WaveletFeatures(None, wavelet="dmey").fit(np.zeros((1, 128, 128))).isometric_
    assert WaveletFeatures(None, wavelet="sym3").fit(np.zeros((1, 64, 64))).isometric_


# ------------------------------------------------------------------- to_pixels with a subset


@pytest.mark.parametrize(("shape", "ndim"), [((8, 8), 2), ((8, 6, 3), 2), ((8, 8, 3), 3), ((5, 7), 2)])
def test_unchosen_coefficients_from_the_image_itself_give_it_back(shape, ndim):
    x = random_images(shape, n=40)
    features = WaveletFeatures(10, ndim=ndim).fit(x)
    np.testing.assert_allclose(features.to_pixels(features.transform(x), reference=x), x, rtol=0, atol=1e-12 * 255)
    # One reference image serves every coefficient vector.
    one = features.to_pixels(features.transform(x[:1]).repeat(4, axis=0), reference=x[0])
    np.testing.assert_allclose(one, np.repeat(x[:1], 4, axis=0), rtol=0, atol=1e-12 * 255)


@pytest.mark.parametrize(("shape", "ndim"), [((8, 8), 2), ((8, 4, 3), 2), ((16, 8), 2)])
def test_delta_is_linear_and_norm_preserving(shape, ndim):
    x = random_images(shape, n=60)
    features = WaveletFeatures(12, ndim=ndim).fit(x)
    assert features.isometric_
    rng = np.random.default_rng(1)
    d1, d2 = rng.normal(size=(2, 5, 12))
    p1, p2 = features.to_pixels(d1, delta=True), features.to_pixels(d2, delta=True)
    np.testing.assert_allclose(features.to_pixels(2.5 * d1 - 0.5 * d2, delta=True), 2.5 * p1 - 0.5 * p2, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(p1.reshape(5, -1), axis=1), np.linalg.norm(d1, axis=1), rtol=1e-12)
    # The change in pixels between two coefficient vectors on the same reference image.
    c = features.transform(x[:5])
    moved = features.to_pixels(c + d1, reference=x[:5]) - features.to_pixels(c, reference=x[:5])
    np.testing.assert_allclose(moved, p1, atol=1e-10)


def test_delta_is_linear_but_not_norm_preserving_in_3d_colour():
    x = random_images((4, 4, 3), n=60)
    features = WaveletFeatures(20, ndim=3).fit(x)
    d = np.random.default_rng(2).normal(size=(50, 20))
    p = features.to_pixels(d, delta=True)
    np.testing.assert_allclose(features.to_pixels(3 * d, delta=True), 3 * p, atol=1e-12)
    assert not np.allclose(np.linalg.norm(p.reshape(50, -1), axis=1), np.linalg.norm(d, axis=1))


def test_parseval_with_a_subset():
    x = random_images((8, 8, 2), n=50)
    features = WaveletFeatures(30).fit(x)
    residual = x - features.to_pixels(features.transform(x))
    lost = np.sum(features.all_coefficients(x) ** 2, axis=1) - np.sum(features.transform(x) ** 2, axis=1)
    np.testing.assert_allclose(np.sum(residual.reshape(50, -1) ** 2, axis=1), lost, rtol=1e-9)


# ------------------------------------------------------------------------- the selection


def test_first_chosen_coefficient_is_the_column_of_largest_norm():
    x = random_images((8, 8), n=30)
    features = WaveletFeatures(5).fit(x)
    norms = np.linalg.norm(features.all_coefficients(x), axis=0)
    assert features.indices_[0] == np.argmax(norms)


def test_each_pivot_has_the_largest_residual_norm():
    """The defining property of QR with column pivoting, pivot after pivot."""
    x = random_images((8, 4, 3), n=120)
    features = WaveletFeatures(12).fit(x)
    a = features.all_coefficients(x)
    for j, pivot in enumerate(features.indices_):
        q = np.linalg.qr(a[:, features.indices_[:j]])[0] if j else np.zeros((len(a), 0))
        residual = a - q @ (q.T @ a)
        assert pivot == np.argmax(np.linalg.norm(residual, axis=0))


@pytest.mark.filterwarnings("error")
@settings(max_examples=25, deadline=None)
@given(
    n_rows=st.integers(1, 40),
    n_columns=st.integers(1, 30),
    n_zero=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_gram_pivots_equal_scipy_qr_pivots(n_rows, n_columns, n_zero, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_rows, n_columns)) * rng.uniform(0.1, 10, size=n_columns)
    a[:, rng.choice(n_columns, size=min(n_zero, n_columns), replace=False)] = 0
    rank = np.linalg.matrix_rank(a)
    # Both warn exactly when some pivots are past the rank (any other warning is an error).
    expect = (lambda: pytest.warns(UserWarning, match="linearly independent")) if rank < n_columns else nullcontext
    with expect():
        fast = gram_pivots(a.T @ a, n_columns)
    with expect():
        reference = qr_pivots(a, n_columns)
    np.testing.assert_array_equal(fast[:rank], reference[:rank])
    assert sorted(fast) == list(range(n_columns))


def test_selection_is_deterministic_and_ignores_row_order():
    x = random_images((8, 8, 3), n=200)
    first = WaveletFeatures(40).fit(x).indices_
    np.testing.assert_array_equal(WaveletFeatures(40).fit(x).indices_, first)
    # Row order changes A^T A only by rounding; with no near-ties the pivots are the same.
    permuted = WaveletFeatures(40).fit(x[np.random.default_rng(3).permutation(200)]).indices_
    np.testing.assert_array_equal(permuted, first)


def test_indices_are_in_pivot_order_and_nested():
    x = random_images((8, 8), n=100)
    many, few = WaveletFeatures(30).fit(x), WaveletFeatures(10).fit(x)
    np.testing.assert_array_equal(many.indices_[:10], few.indices_)
    np.testing.assert_array_equal(many.transform(x)[:, :10], few.transform(x))
    assert len(set(many.indices_)) == 30


def test_max_fit_samples_fits_on_a_seeded_subsample():
    x = random_images((8, 8), n=300)
    features = WaveletFeatures(20, max_fit_samples=100, seed=7).fit(x)
    rows = features.fit_rows_
    assert len(rows) == 100 and np.all(np.diff(rows) > 0) and rows[-1] < 300
    np.testing.assert_array_equal(WaveletFeatures(20, max_fit_samples=100, seed=7).fit(x).fit_rows_, rows)
    assert not np.array_equal(WaveletFeatures(20, max_fit_samples=100, seed=8).fit(x).fit_rows_, rows)
    np.testing.assert_array_equal(WaveletFeatures(20).fit(x[rows]).indices_, features.indices_)
    everything = WaveletFeatures(20, max_fit_samples=1000).fit(x)
    np.testing.assert_array_equal(everything.fit_rows_, np.arange(300))
    np.testing.assert_array_equal(everything.indices_, WaveletFeatures(20).fit(x).indices_)


def test_warns_when_more_coefficients_than_independent_images():
    with pytest.warns(UserWarning, match="linearly independent"):
        WaveletFeatures(10).fit(random_images((4, 4), n=3))


@pytest.mark.skipif(not os.path.exists(MNIST), reason="MNIST not available")
def test_mnist_500_images():
    with np.load(MNIST) as data:
        x = data["x_train"][:500]
    features = WaveletFeatures(100).fit(x)
    a = features.all_coefficients(x)
    np.testing.assert_array_equal(features.indices_, qr_pivots(a, 100))
    permuted = WaveletFeatures(100).fit(x[np.random.default_rng(0).permutation(500)])
    np.testing.assert_array_equal(permuted.indices_, features.indices_)
    np.testing.assert_allclose(features.to_pixels(features.transform(x), reference=x), x, atol=1e-10)
    residual = (x - features.to_pixels(features.transform(x))).reshape(500, -1)
    lost = np.sum(a**2, axis=1) - np.sum(a[:, features.indices_] ** 2, axis=1)
    np.testing.assert_allclose(np.sum(residual**2, axis=1), lost, rtol=1e-8)


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", ["transform", "to_pixels", "all_coefficients"])
def test_methods_before_fit_raise_not_fitted(method):
    features = WaveletFeatures(3)
    argument = np.zeros((1, 3)) if method == "to_pixels" else np.zeros((1, 4, 4))
    with pytest.raises(NotFittedError, match=f"WaveletFeatures.{method}"):
        getattr(features, method)(argument)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_coefficients": 0},
        {"n_coefficients": -2},
        {"n_coefficients": 2.5},
        {"n_coefficients": True},
        {"n_coefficients": 3, "ndim": 4},
        {"n_coefficients": 3, "level": -1},
        {"n_coefficients": 3, "max_fit_samples": 0},
        {"n_coefficients": 3, "wavelet": "morl"},
        {"n_coefficients": 3, "wavelet": "no-such-wavelet"},
        {"n_coefficients": 3, "mode": "no-such-mode"},
    ],
)
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(ValueError):
        WaveletFeatures(**kwargs)


def test_too_many_coefficients_is_rejected_and_keeps_the_fitted_state():
    features = WaveletFeatures(20).fit(random_images((8, 8), n=30))
    indices = features.indices_.copy()
    features.n_coefficients = 65
    with pytest.raises(ValueError, match="more than the 64"):
        features.fit(random_images((8, 8), n=30))
    np.testing.assert_array_equal(features.indices_, indices)
    assert features.image_shape_ == (8, 8)


@pytest.mark.parametrize(
    ("ndim", "images", "match"),
    [
        (2, np.zeros((4, 8)), "shape"),
        (2, np.zeros((1, 4, 4, 3, 2)), "shape"),
        (3, np.zeros((4, 8, 8)), r"\(n, H, W, C\)"),
        (2, np.zeros((0, 8, 8)), "at least one"),
        (2, np.zeros((2, 0, 8)), "empty"),
        (2, np.full((2, 4, 4), np.nan), "NaN"),
        (2, np.full((2, 4, 4), np.inf), "NaN or infinite"),
        (2, np.zeros((2, 4, 4), dtype=complex), "real"),
        (2, np.full((2, 4, 4), "a"), "real"),
    ],
)
def test_bad_images_in_fit(ndim, images, match):
    with pytest.raises(ValueError, match=match):
        WaveletFeatures(2, ndim=ndim).fit(images)


def test_bad_inputs_after_fit():
    x = random_images((8, 8), n=20)
    features = WaveletFeatures(5).fit(x)
    with pytest.raises(ValueError, match=r"\(n, 8, 8\) as in fit"):
        features.transform(random_images((8, 6)))
    with pytest.raises(ValueError, match="NaN"):
        features.transform(np.where(x == x[0, 0, 0], np.nan, x))
    with pytest.raises(ValueError, match=r"shape \(n, 5\).*batch axis"):
        features.to_pixels(np.zeros(5))
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        features.to_pixels(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="NaN"):
        features.to_pixels(np.full((2, 5), np.inf))
    with pytest.raises(ValueError, match="NaN"):
        features.to_pixels(np.zeros((1, 5)), reference=np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="give 1 or 2"):
        features.to_pixels(np.zeros((2, 5)), reference=x[:3])
    with pytest.raises(ValueError, match=r"reference must have shape \(n, 8, 8\) as in fit"):
        features.to_pixels(np.zeros((1, 5)), reference=np.zeros((7, 7)))
    with pytest.raises(ValueError, match="delta=True"):
        features.to_pixels(np.zeros((1, 5)), reference=x[0], delta=True)


def test_empty_batches_pass_through():
    features = WaveletFeatures(5).fit(random_images((8, 8), n=20))
    assert features.transform(np.zeros((0, 8, 8))).shape == (0, 5)
    assert features.to_pixels(np.zeros((0, 5))).shape == (0, 8, 8)
