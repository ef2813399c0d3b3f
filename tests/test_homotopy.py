"""Algorithm 1 (widths and the line-13 bias), Algorithm F2, and the homotopy path."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import fliplib
from fliplib import homotopy
from fliplib.model import ERF_SLOPE
from fliplib.params import forward, network_params


def test_gamma_gives_slope_tau():
    for tau in (1e-2, 1e-4, 1e-7):
        gamma = homotopy.erf_gamma(tau)
        assert ERF_SLOPE * math.exp(-gamma**2) == pytest.approx(tau)
    with pytest.raises(ValueError):
        homotopy.erf_gamma(2.0)


@pytest.mark.parametrize("sigma, tau", [(1.0, 1e-4), (0.05, 1e-4), (0.05, 1e-2), (5.0, 1e-6)])
def test_transform_erf_bounds_every_neuron_slope(sigma, tau):
    model = fliplib.erf_network([5, 20, 20, 20, 20, 3], sigma=sigma, seed=0)
    params = network_params(model)
    x = tf.constant(np.random.default_rng(0).normal(scale=3.0, size=(16, 5)))
    sigmas = homotopy.transform_erf(params, x, tau)
    fwd = forward(params, x, scales=sigmas)
    y = x
    for k, (w, b) in enumerate(zip(params.weights[:-1], params.biases[:-1])):
        c = (y @ w + b).numpy()
        s = sigmas[k].numpy()
        assert np.all(s >= ERF_SLOPE * (1 - 1e-12))
        # Line 4 / line 8: |c| / sigma <= gamma, so erf'(c / sigma) >= tau ...
        assert np.all(ERF_SLOPE * np.exp(-((c / s) ** 2)) >= tau * (1 - 1e-9))
        # ... and every slope d erf(c / sigma) / dc <= 1.
        assert np.all(fwd.slopes[k].numpy() <= 1 + 1e-12)
        # Uniform per sample unless the uniform width would exceed 2 / (tau sqrt(pi)) (lines 5-10).
        uniform = np.ptp(s, axis=1) == 0
        needed = np.maximum(ERF_SLOPE, np.abs(c).max(axis=1) / homotopy.erf_gamma(tau)) > ERF_SLOPE / tau
        assert np.array_equal(uniform, ~needed | (np.ptp(np.maximum(ERF_SLOPE, np.abs(c) / homotopy.erf_gamma(tau)), axis=1) == 0))
        y = tf.math.erf(c / s)


def test_transform_prelu_sets_tau_where_a_neuron_is_off():
    model = fliplib.prelu_network([3, 6, 6, 2], alpha=0.0, seed=1)
    params = network_params(model)
    x = tf.constant(np.random.default_rng(1).normal(size=(10, 3)))
    alphas = homotopy.transform_prelu(params, x, 0.5)
    c = (x @ params.weights[0] + params.biases[0]).numpy()
    expected = np.where((c < 0).any(axis=1), 0.5, 0.0)
    np.testing.assert_array_equal(alphas[0].numpy()[:, 0], expected)


def brute_force_bias(u, i, j, margin):
    n = len(u)
    others = [k for k in range(n) if k not in (i, j)]
    cons = [{"type": "eq", "fun": lambda d: np.array([u[i] + d[i] - u[j] - d[j]])}]
    if others:
        cons.append({"type": "ineq", "fun": lambda d: np.array([u[i] + d[i] - u[k] - d[k] - margin for k in others])})
    res = minimize(lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, constraints=cons, method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})
    return res.x


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-5, 5), min_size=2, max_size=7),
    data=st.data(),
    margin=st.sampled_from([0.0, 1e-3, 0.5]),
)
def test_flip_bias_closed_form_is_the_qp_solution(logits, data, margin):
    u = np.array(logits)
    n = len(u)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 2))
    j = j + (j >= i)
    delta = homotopy.flip_bias(tf.constant(u[None]), tf.constant([i]), tf.constant([j]), margin).numpy()[0]
    v = u + delta
    assert abs(v[i] - v[j]) <= 1e-12
    others = [k for k in range(n) if k not in (i, j)]
    assert all(v[i] - v[k] >= margin - 1e-12 for k in others)
    ref = brute_force_bias(u, i, j, margin)
    assert delta @ delta <= (ref @ ref) * (1 + 1e-7) + 1e-10


def test_flip_bias_makes_x_a_flip_point_of_the_transformed_network():
    model = fliplib.erf_network([4, 10, 10, 5], seed=3)
    params = network_params(model)
    x = tf.constant(np.random.default_rng(3).normal(size=(8, 4)))
    sigmas = homotopy.transform_erf(params, x, 1e-4)
    logits = forward(params, x, scales=sigmas).logits
    src = tf.argmax(logits, axis=1)
    tgt = (src + 1) % 5
    bias = params.biases[-1] + homotopy.flip_bias(logits, src, tgt, 1e-3)
    z = forward(params, x, scales=sigmas, output_bias=bias).logits.numpy()
    rows = np.arange(8)
    np.testing.assert_allclose(z[rows, src.numpy()], z[rows, tgt.numpy()], atol=1e-12)


def test_interpolate_endpoints_are_exact():
    model = fliplib.erf_network([3, 6, 6, 3], sigma=0.7, seed=0)
    params = network_params(model)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)))
    start = homotopy.HomotopyStart(scales=homotopy.transform_erf(params, x, 1e-5),
                                   output_bias=tf.random.stateless_normal((4, 3), seed=[1, 2], dtype=tf.float64))
    s0, b0 = homotopy.interpolate(params, start, tf.zeros(4, tf.float64))
    s1, b1 = homotopy.interpolate(params, start, tf.ones(4, tf.float64))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(s0, start.scales))
    assert np.array_equal(b0.numpy(), start.output_bias.numpy())
    assert all(np.all(s.numpy() == sigma) for s, sigma in zip(s1, params.scales))  # float32 0.7, exactly
    assert np.array_equal(b1.numpy(), np.broadcast_to(params.biases[-1].numpy(), (4, 3)))


def test_inverse_schedule_moves_one_over_sigma_linearly_and_ends_exactly():
    model = fliplib.erf_network([3, 6, 6, 3], sigma=0.2, seed=0)
    params = network_params(model)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)))
    start = homotopy.HomotopyStart(scales=homotopy.transform_erf(params, x, 1e-5),
                                   output_bias=tf.zeros((4, 3), tf.float64))
    ts = [0.0, 0.25, 0.5, 1.0]
    inv = [homotopy.interpolate(params, start, tf.fill([4], t), schedule="inverse")[0][0].numpy() for t in ts]
    np.testing.assert_allclose(inv[0], start.scales[0].numpy())
    np.testing.assert_allclose(1 / inv[2], 0.5 * (1 / inv[0] + 1 / params.scales[0]))
    np.testing.assert_allclose(1 / inv[1] - 1 / inv[0], 1 / inv[2] - 1 / inv[1])
    assert np.all(inv[3] == params.scales[0])
    with pytest.raises(ValueError, match="schedule"):
        homotopy.interpolate(params, start, tf.zeros(4, tf.float64), schedule="cubic")


def test_follow_path_records_a_path_of_flip_points_of_each_stage():
    # Algorithm 2 with uniform steps: every accepted stage k is at t = k / eta, and its point is a
    # flip point of that stage's network N(t) (relative gap below path_tol), found in one solve.
    from fliplib import homotopy, sqp

    net = fliplib.erf_network([4, 12, 12, 3], sigma=0.7, seed=2)
    params = fliplib.network_params(net)
    x0 = np.random.default_rng(1).normal(size=(5, 4))
    src = np.argmax(fliplib.predict_proba(net, x0), axis=1)
    tgt = (src + 1) % 3
    inf = np.full_like(x0, np.inf)
    problems = sqp.Problems(x0, -inf, inf, np.ones_like(x0), src, tgt)
    step = sqp.sqp_step("erf", 3, 2, len(params.weights))
    eta = 4
    path = homotopy.follow_path(params, step, problems, eta=eta, adaptive=False, tau=1e-5, schedule="linear",
                                margin=1e-3, path_tol=1e-4, inner_iter=40, gap_tol=1e-6, xtol=1e-4, max_iter=300,
                                record=True)
    assert len(path.stages) == eta - 1  # stages k = 1 .. eta - 1; the last is the original network
    start = homotopy.transform(params, x0, src, tgt, tau=1e-5, margin=1e-3)
    for k, (idx, t, points, n_jac) in enumerate(path.stages, start=1):
        assert np.all(n_jac >= k)
        np.testing.assert_allclose(t, k / eta)
        scales, bias = homotopy.interpolate(params, start, np.full(len(x0), k / eta))
        z = fliplib.params.forward(params, points, scales=[s.numpy()[idx] for s in scales],
                                   output_bias=bias.numpy()[idx]).logits.numpy()
        rows = np.arange(len(idx))
        gap = np.abs(z[rows, src[idx]] - z[rows, tgt[idx]])
        assert np.all(gap <= 1e-4 * np.maximum(1.0, np.abs(z[rows, src[idx]])) * (1 + 1e-9))
    assert np.all(path.n_steps == eta - 1)
