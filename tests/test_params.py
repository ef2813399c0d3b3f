"""fliplib.params: the float64 parameter view, its NumPy forward pass and the bisection onto the boundary."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import fliplib
from fliplib.params import NetworkParams, bisect_boundary, forward, logit_margin, logits, network_params, numpy_network


@pytest.fixture(scope="module", params=["erf", "prelu"])
def net(request):
    if request.param == "erf":
        return fliplib.erf_network([5, 9, 7, 4], sigma=0.7, seed=2)
    return fliplib.prelu_network([5, 9, 7, 4], alpha=0.1, seed=2)


def test_numpy_forward_pass_matches_tensorflow(net, rng):
    params = network_params(net)
    x = rng.normal(size=(20, 5)) * 3
    fwd = forward(params, x)
    numpy_net = numpy_network(net)
    logits, slopes = numpy_net.forward(x)
    np.testing.assert_allclose(logits, fwd.logits.numpy(), rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(slopes, fwd.slopes):
        np.testing.assert_allclose(mine, np.broadcast_to(theirs.numpy(), mine.shape), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(numpy_net.logits(x, batch_size=3), logits, rtol=1e-14, atol=1e-14)
    assert numpy_network(numpy_net) is numpy_net
    assert numpy_net.logits(np.zeros((0, 5))).shape == (0, 4)


def test_logits_alone_match_the_forward_pass_and_float32_keeps_the_class(net, rng):
    params = network_params(net)
    x = rng.normal(size=(400, 5)) * 3
    exact = forward(params, x).logits.numpy()
    np.testing.assert_array_equal(logits(params, x).numpy(), exact)
    fast = logits(params, x, dtype=tf.float32)
    assert fast.dtype == tf.float32
    scale = np.maximum(1.0, np.abs(exact).max(axis=1, keepdims=True))
    assert np.all(np.abs(fast.numpy() - exact) <= 1e-5 * scale)
    top2 = np.sort(exact, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * scale[:, 0]  # away from a tie, the same predicted class
    assert clear.sum() > 300
    np.testing.assert_array_equal(fast.numpy().argmax(axis=1)[clear], exact.argmax(axis=1)[clear])


def _linear(w, b) -> NetworkParams:
    """Affine logits x W + b (a PReLU layer of slope 1 is the identity)."""
    d = w.shape[0]
    return NetworkParams(weights=(tf.constant(np.eye(d)), tf.constant(w)), biases=(tf.constant(np.zeros(d)), tf.constant(b)),
                         activation="prelu", scales=(1.0,))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), xtol=st.sampled_from([0.0, 1e-6, 1e-3]))
def test_bisection_finds_the_crossing_of_an_affine_margin(seed, xtol):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    net = numpy_network(_linear(w, b))
    start, direction = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) * 4
    wd, bd = w[:, 0] - w[:, 1], b[0] - b[1]
    g0, slope = start @ wd + bd, direction @ wd
    t_star = -g0 / slope
    ok = (t_star > 0) & (t_star < 1)
    if not ok.any():
        return
    src = np.zeros(ok.sum(), dtype=int)
    t = bisect_boundary(net, start[ok], direction[ok], src, np.ones_like(src), xtol=xtol, max_halvings=100)
    length = np.linalg.norm(direction[ok], axis=1)
    assert np.all(np.abs(t - t_star[ok]) * length <= max(xtol, 1e-12) + 1e-12)
    # Two classes: the boundary against every other class is the same.
    np.testing.assert_allclose(bisect_boundary(net, start[ok], direction[ok], src, xtol=xtol, max_halvings=100), t)


def test_bisection_stays_in_its_bracket_and_counts_halvings():
    net = numpy_network(_linear(np.array([[1.0, -1.0]]), np.zeros(2)))  # z_1 - z_0 = -2x: crossing at x = 0
    start, direction = np.array([[-1.2], [-1.2]]), np.array([[4.0], [4.0]])  # x(t) = 0 at t = 0.3
    src = np.array([1, 1])
    # One halving: [0, 0.5] keeps [0.25, 0.5] (midpoint 0.375), [0.2, 0.4] keeps [0.2, 0.3] (0.25).
    t = bisect_boundary(net, start, direction, src, t_lo=[0.0, 0.2], t_hi=[0.5, 0.4], max_halvings=1)
    np.testing.assert_allclose(t, [0.375, 0.25])
    t = bisect_boundary(net, start, direction, src, t_lo=[0.0, 0.2], t_hi=[0.5, 0.4], xtol=1e-9)
    np.testing.assert_allclose(t, 0.3, atol=1e-9 / 4)


def test_logit_margin_against_one_class_and_against_all():
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    np.testing.assert_allclose(logit_margin(logits, np.array([0, 0]), np.array([1, 2])), [2.0, 1.0])
    np.testing.assert_allclose(logit_margin(logits, np.array([0, 1])), [1.0, 5.0])


def test_numpy_forward_pass_on_huge_inputs_warns_nothing(net):
    x = np.random.default_rng(0).normal(size=(4, 5)) * 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = numpy_network(net).logits(x)
        numpy_network(net).forward(x)
    assert logits.shape == (4, 4)


@pytest.mark.parametrize("sigma", [0.0, 1e-320, -1.0, np.nan, np.inf])
def test_network_params_refuses_an_unusable_erf_width(sigma):
    model = fliplib.erf_network([3, 4, 4, 2], seed=0)
    model.get_layer("erf_2").sigma.assign(sigma)
    with pytest.raises(ValueError, match="layer 'erf_2': the erf width sigma must be a positive finite number"):
        network_params(model)


def test_network_params_refuses_a_half_precision_model():
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = fliplib.erf_network([3, 4, 2], seed=0)
    finally:
        keras.config.set_dtype_policy(before)
    with pytest.raises(TypeError, match="computes in float16 \\(dtype policy 'mixed_float16'\\)"):
        network_params(model)
