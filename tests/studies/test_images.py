"""Tests of fliplib.studies.images: the network on pixels, legitimacy, direction statistics, displays."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fliplib
from fliplib.studies.images import bound_violations, pixel_network, signed_rgb
from fliplib.params import forward
from fliplib.wavelets import WaveletFeatures

finite = st.floats(-300, 300, allow_nan=False, allow_infinity=False)


@pytest.fixture(scope="module")
def small_setup():
    """Wavelet features of 8 x 8 RGB images (192 pixels, 40 kept) and an erf network on them."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(60, 8, 8, 3))
    features = WaveletFeatures(40).fit(images)
    model = fliplib.erf_network([40, 12, 8, 2], seed=1)
    offset = features.transform(images).mean(axis=0)
    return images, features, model, offset


# ------------------------------------------------------------------------------ pixel_network


def test_pixel_network_is_the_same_function(small_setup):
    images, features, model, offset = small_setup
    net = pixel_network(model, features, offset=offset)
    on_pixels = forward(net, images.reshape(len(images), -1)).logits.numpy()
    on_coefficients = forward(fliplib.network_params(model), features.transform(images) - offset).logits.numpy()
    np.testing.assert_allclose(on_pixels, on_coefficients, rtol=1e-10, atol=1e-10)
    assert net.n_features == 8 * 8 * 3 and net.layer_sizes[1:] == [12, 8, 2]


def test_pixel_network_ignores_the_coefficients_it_drops(small_setup):
    # Moving the pixels along a wavelet basis image that was not chosen changes no logit.
    images, features, model, offset = small_setup
    net = pixel_network(model, features, offset=offset)
    unchosen = np.setdiff1d(np.arange(features.n_all_coefficients_), features.indices_)[0]
    coefficients = np.zeros((1, features.n_all_coefficients_))
    coefficients[0, unchosen] = 1.0
    # The basis image of that coefficient: invert all coefficients with an "all" feature map.
    every = WaveletFeatures(None).fit(images[:1])
    basis_image = every.to_pixels(coefficients).reshape(1, -1)
    x = images[:3].reshape(3, -1)
    before = forward(net, x).logits.numpy()
    after = forward(net, x + 0.3 * basis_image).logits.numpy()
    np.testing.assert_allclose(before, after, atol=1e-10)


def test_closest_flip_point_in_pixel_space_respects_the_box(small_setup):
    images, features, model, offset = small_setup
    net = pixel_network(model, features, offset=offset)
    x = images[:4].reshape(4, -1)
    pred = forward(net, x).logits.numpy().argmax(axis=1)
    result = fliplib.closest_flip_points(net, x, 1 - pred, lower=0.0, upper=1.0, method="direct")
    largest, _ = bound_violations(result.x[result.success], lower=0.0, upper=1.0)
    assert result.success.any()
    assert np.all(largest == 0)


def test_pixel_network_checks_its_inputs(small_setup):
    images, features, model, offset = small_setup
    with pytest.raises(ValueError, match="fitted"):
        pixel_network(model, WaveletFeatures(40))
    with pytest.raises(ValueError, match="inputs"):
        pixel_network(fliplib.erf_network([30, 4, 2], seed=0), features)
    with pytest.raises(ValueError, match="offset"):
        pixel_network(model, features, offset=np.zeros(3))


# ------------------------------------------------------------------------------ bound_violations


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (5, 7), elements=finite))
def test_bound_violations_match_a_direct_count(a):
    largest, n_outside = bound_violations(a, lower=0.0, upper=255.0)
    for row, big, count in zip(a, largest, n_outside):
        outside = (row < 0) | (row > 255)
        assert count == outside.sum()
        assert big == (max(np.max(-row), np.max(row - 255)) if outside.any() else 0.0)
    assert np.all(largest >= 0)


def test_bound_violations_of_legitimate_images_are_zero():
    largest, n_outside = bound_violations(np.array([[[0.0, 255.0], [3.0, 128.0]]]))
    assert largest.tolist() == [0.0] and n_outside.tolist() == [0]


def test_bound_violations_flag_nan_and_check_the_range():
    largest, n_outside = bound_violations(np.array([[np.nan, 1.0]]), lower=0.0, upper=2.0)
    assert largest[0] == np.inf and n_outside[0] == 1
    with pytest.raises(ValueError, match="lower < upper"):
        bound_violations(np.zeros((1, 2)), lower=1.0, upper=1.0)
    with pytest.raises(ValueError, match="batch"):
        bound_violations(np.zeros(3))


# ------------------------------------------------------------------------------ direction statistics


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (4, 4, 3), elements=finite), st.floats(0.1, 50))
def test_signed_rgb_is_grey_at_zero_and_monotone(delta, magnify):
    image = signed_rgb(delta, magnify=magnify, full_scale=255.0)
    assert image.shape == delta.shape and np.all((image >= 0) & (image <= 1))
    assert np.all(image[delta == 0] == 0.5)
    order = np.argsort(delta.ravel(), kind="stable")
    assert np.all(np.diff(image.ravel()[order]) >= 0)


def test_signed_rgb_magnifies_as_the_paper():
    # A change of 0.5 grey levels, magnified 25 times, moves the channel by 12.5 levels.
    assert signed_rgb(np.array([0.5]), magnify=25)[0] == pytest.approx(0.5 + 12.5 / 255)
    with pytest.raises(ValueError, match="positive"):
        signed_rgb(np.zeros(2), magnify=0.0)


