"""Analytic derivatives (eqs. 11-13) against autodiff and finite differences; Lipschitz bounds (eqs. 15-16)."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import fliplib
from fliplib.baselines import numpy_logit_jacobian, numpy_logits
from fliplib.params import NetworkParams, forward, network_params

NETWORKS = [
    ([4, 6, 3], 1.0),
    ([5, 12, 12, 12, 4], 0.3),  # narrow widths: saturated neurons, small gradients
    ([5, 12, 12, 12, 4], 3.0),  # wide widths: near-linear layers
    ([3, 8, 8, 8, 8, 8, 8, 2], 1.0),
]


def autodiff_jacobian(params, x):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = forward(params, xt).logits
    return tape.batch_jacobian(z, xt).numpy()


@pytest.mark.parametrize("sizes, sigma", NETWORKS)
def test_logit_jacobian_matches_autodiff_and_finite_differences(sizes, sigma):
    model = fliplib.erf_network(sizes, sigma=sigma, seed=len(sizes))
    params = network_params(model)
    x = np.random.default_rng(0).normal(size=(7, sizes[0]))
    jac = fliplib.logit_jacobian(model, x)
    assert jac.shape == (7, sizes[-1], sizes[0])
    np.testing.assert_allclose(jac, autodiff_jacobian(params, x), rtol=1e-10, atol=1e-13)
    h = 1e-6
    for k in range(sizes[0]):
        e = np.zeros(sizes[0])
        e[k] = h
        fd = (numpy_logits(params, x + e) - numpy_logits(params, x - e)) / (2 * h)
        np.testing.assert_allclose(jac[:, :, k], fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("sizes, sigma", NETWORKS)
def test_float32_vjp_keeps_single_precision_relative_to_each_row(sizes, sigma):
    model = fliplib.erf_network(sizes, sigma=sigma, seed=len(sizes))
    params = network_params(model)
    x = np.random.default_rng(3).normal(size=(6, sizes[0]))
    seeds = tf.constant(np.random.default_rng(4).normal(size=(6, 3, sizes[-1])))
    fwd = forward(params, x)
    exact = fliplib.jacobian.vjp(params, fwd, seeds).numpy()
    single = fliplib.jacobian.vjp_float32(params, fwd, seeds).numpy()
    assert single.dtype == np.float64
    scale = np.abs(exact).max(axis=2, keepdims=True)
    assert np.all(np.abs(single - exact) <= 1e-5 * scale)


def test_float32_vjp_does_not_underflow_where_float64_gradients_are_tiny():
    # sigma = 0.05 on 6 layers: the logit gradients are far below float32's smallest number.
    model = fliplib.erf_network([3, 8, 8, 8, 8, 8, 8, 2], sigma=0.05, seed=5)
    params = network_params(model)
    x = np.random.default_rng(5).normal(size=(20, 3))
    fwd = forward(params, x)
    seeds = tf.constant(np.tile([[[1.0, -1.0]]], (20, 1, 1)))
    exact = fliplib.jacobian.vjp(params, fwd, seeds).numpy()[:, 0]
    single = fliplib.jacobian.vjp_float32(params, fwd, seeds).numpy()[:, 0]
    tiny = (np.abs(exact).max(axis=1) < 1e-45) & (np.abs(exact).max(axis=1) > 1e-300)
    assert tiny.sum() >= 3, "the test network should have rows below float32's range"
    row_max = np.abs(exact[tiny]).max(axis=1, keepdims=True)
    assert np.all(np.abs(single[tiny] - exact[tiny]) <= 1e-5 * row_max)


def test_float32_vjp_keeps_a_row_that_sits_on_saturated_neurons():
    # Two hidden erf neurons, one linear (slope ~1), one saturated (slope ~e^-100 ~ 4e-44, a float32
    # subnormal); the logit difference depends on the saturated one only.
    params = NetworkParams(
        weights=(tf.constant(np.eye(2)), tf.constant([[0.0, 0.0], [1.0, 0.0]], tf.float64)),
        biases=(tf.constant([0.0, 10.0], tf.float64), tf.zeros(2, tf.float64)), activation="erf", scales=(1.0,),
    )
    x = np.array([[0.0, 0.0], [0.1, -0.05], [0.0, -10.0]])  # the last point: both neurons linear
    fwd = forward(params, x)
    seeds = tf.constant(np.tile([[[1.0, -1.0]]], (3, 1, 1)))
    exact = fliplib.jacobian.vjp(params, fwd, seeds).numpy()[:, 0]
    single = fliplib.jacobian.vjp_float32(params, fwd, seeds).numpy()[:, 0]
    assert np.all(np.abs(exact[:2, 1]) > 1e-46) and np.all(np.abs(exact[:2, 1]) < 1e-40)
    assert abs(exact[2, 1]) > 1.0
    np.testing.assert_allclose(single, exact, rtol=1e-6, atol=0)


def test_float32_vjp_on_a_relu_network_with_dead_neurons():
    model = fliplib.prelu_network([8, 30, 30, 30, 4], alpha=0.0, seed=6)
    params = network_params(model)
    x = np.random.default_rng(8).normal(size=(50, 8))
    fwd = forward(params, x)
    assert np.mean([np.mean(s.numpy() == 0) for s in fwd.slopes]) > 0.2  # many zero slopes
    seeds = tf.constant(np.random.default_rng(9).normal(size=(50, 3, 4)))
    exact = fliplib.jacobian.vjp(params, fwd, seeds).numpy()
    single = fliplib.jacobian.vjp_float32(params, fwd, seeds).numpy()
    scale = np.abs(exact).max(axis=2, keepdims=True)
    assert np.all(np.abs(single - exact) <= 1e-5 * scale)


@pytest.mark.parametrize("seed_scale", [1e50, 1e-50, 1e300])
def test_float32_vjp_takes_seeds_beyond_float32_range(seed_scale):
    # The SQP's secant seed (the previous multipliers) can be far outside float32's range.
    model = fliplib.erf_network([4, 9, 9, 3], sigma=0.7, seed=2)
    params = network_params(model)
    x = np.random.default_rng(6).normal(size=(5, 4))
    seeds = np.random.default_rng(7).normal(size=(5, 2, 3))
    seeds[:, 0] *= seed_scale  # one row huge (or tiny), the other of order one
    fwd = forward(params, x)
    exact = fliplib.jacobian.vjp(params, fwd, tf.constant(seeds)).numpy()
    single = fliplib.jacobian.vjp_float32(params, fwd, tf.constant(seeds)).numpy()
    assert np.all(np.isfinite(single))
    scale = np.abs(exact).max(axis=2, keepdims=True)
    assert np.all(scale > 0)
    assert np.all(np.abs(single - exact) <= 1e-5 * scale)


@pytest.mark.parametrize("sizes, sigma", NETWORKS[:2])
def test_numpy_forward_and_reverse_accumulation_of_eq_12_agree(sizes, sigma):
    model = fliplib.erf_network(sizes, sigma=sigma, seed=1)
    x = np.random.default_rng(1).normal(size=(3, sizes[0]))
    jac = fliplib.logit_jacobian(model, x)
    for row, point in zip(jac, x):
        for accumulation in ("forward", "reverse"):
            np.testing.assert_allclose(row, numpy_logit_jacobian(model, point, accumulation=accumulation)[1],
                                       rtol=1e-10, atol=1e-13)


def test_softmax_jacobian_eq_13():
    model = fliplib.erf_network([4, 10, 10, 3], seed=2)
    params = network_params(model)
    x = np.random.default_rng(2).normal(size=(5, 4))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        p = tf.nn.softmax(forward(params, xt).logits)
    np.testing.assert_allclose(fliplib.softmax_jacobian(model, x), tape.batch_jacobian(p, xt).numpy(), rtol=1e-9, atol=1e-13)


def test_prelu_jacobian_matches_autodiff():
    model = fliplib.prelu_network([4, 9, 9, 3], alpha=0.2, seed=0)
    params = network_params(model)
    x = np.random.default_rng(3).normal(size=(6, 4))
    np.testing.assert_allclose(fliplib.logit_jacobian(model, x), autodiff_jacobian(params, x), rtol=1e-10, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 5.0))
def test_lipschitz_bound_dominates_the_jacobian(seed, scale):
    model = fliplib.erf_network([3, 6, 6, 2], sigma=1.0, seed=0)
    x = np.random.default_rng(seed).normal(scale=scale, size=(20, 3))
    jac = fliplib.logit_jacobian(model, x)
    bound_inf = fliplib.lipschitz_bound(model)
    bound_two = fliplib.lipschitz_bound(model, ord=2)
    assert np.all(np.abs(jac).sum(axis=2).max(axis=1) <= bound_inf * (1 + 1e-12))
    assert np.all(np.linalg.norm(jac, ord=2, axis=(1, 2)) <= bound_two * (1 + 1e-12))


def test_lipschitz_bound_scales_inversely_with_sigma_and_eq_16():
    model = fliplib.erf_network([3, 6, 6, 2], sigma=1.0, seed=0)
    base = fliplib.lipschitz_bound(model)
    assert fliplib.lipschitz_bound(model, sigma=[2.0, 2.0]) == pytest.approx(base / 4)
    tau = 1e-3
    low, high = fliplib.homotopy_lipschitz_bounds(model, tau)
    two_over_root_pi = 2 / np.sqrt(np.pi)
    for sigma in (two_over_root_pi, two_over_root_pi / tau):
        b = fliplib.lipschitz_bound(model, sigma=[sigma, sigma])
        assert low * (1 - 1e-12) <= b <= high * (1 + 1e-12)
    with pytest.raises(ValueError):
        fliplib.lipschitz_bound(model, sigma=[1.0])


def test_layer_jacobian_norms_multiply_to_a_bound():
    model = fliplib.erf_network([4, 8, 8, 8, 3], seed=5)
    x = np.random.default_rng(4).normal(size=(6, 4))
    norms = fliplib.layer_jacobian_norms(model, x)
    assert norms.shape == (6, 3)
    jac = fliplib.logit_jacobian(model, x)
    w_out = np.linalg.norm(network_params(model).weights[-1].numpy().T, 2)
    assert np.all(np.linalg.norm(jac, 2, axis=(1, 2)) <= norms.prod(axis=1) * w_out * (1 + 1e-10))


def test_jacobian_rejects_bad_input():
    model = fliplib.erf_network([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="shape"):
        fliplib.logit_jacobian(model, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        fliplib.logit_jacobian(model, np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fliplib.logit_jacobian(model, np.zeros((2, 3)), batch_size=-1)


def test_forward_saturates_at_huge_pre_activations():
    # TensorFlow's float64 erf is NaN beyond |u| ~ 1e154; the network's erf is +-1 there, as
    # SciPy's is, and its slope 0.
    model = fliplib.erf_network([3, 5, 4, 2], seed=1)
    params = network_params(model)
    x = np.array([[1e160, -3e200, 0.5], [2.0, -1.0, 0.25]])
    fwd = forward(params, x)
    assert np.all(np.isfinite(fwd.logits.numpy()))
    with np.errstate(over="ignore"):  # SciPy's slope exp(-u**2) overflows to exp(-inf) = 0
        expected = numpy_logits(params, x)
    np.testing.assert_allclose(fwd.logits.numpy(), expected, rtol=1e-12, atol=1e-12)
    jac = fliplib.logit_jacobian(model, x)
    assert np.all(np.isfinite(jac))
