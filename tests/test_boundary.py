"""Properties of fliplib.boundary: crossings, Taylor estimates, directions, connectedness, PGD."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from scipy.special import erf

import fliplib
from fliplib import boundary
from fliplib.params import NetworkParams


def _params(weights, biases, activation="erf", scales=None):
    scales = tuple(scales if scales is not None else [1.0] * (len(weights) - 1))
    return NetworkParams(
        weights=tuple(tf.constant(np.asarray(w, float)) for w in weights),
        biases=tuple(tf.constant(np.asarray(b, float)) for b in biases),
        activation=activation,
        scales=scales,
    )


def bumps(centers, steepness, level):
    """1-D erf network whose margin is ``sum_k (-1)^k erf(s (x - c_k)) - level``: known wiggles."""
    k = len(centers)
    w1 = np.full((1, k), steepness)
    b1 = -steepness * np.asarray(centers)
    signs = np.array([(-1.0) ** i for i in range(k)])
    w2 = np.stack([signs, np.zeros(k)], axis=1)
    b2 = np.array([-level, 0.0])
    return _params([w1, w2], [b1, b2])


def bump_margin(centers, steepness, level, x):
    signs = np.array([(-1.0) ** i for i in range(len(centers))])
    return (signs * erf(steepness * (x[:, None] - np.asarray(centers)))).sum(axis=1) - level


def linear(w, b):
    """A network whose logits are affine (PReLU with slope 1 is the identity)."""
    w = np.asarray(w, float)
    d, c = w.shape
    return _params([np.eye(d), w], [np.zeros(d), b], activation="prelu", scales=[1.0])


@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    centers=st.lists(st.floats(-0.8, 0.8), min_size=1, max_size=4, unique=True).map(sorted),
    steepness=st.floats(3.0, 12.0),
    level=st.floats(0.1, 0.9) | st.floats(-0.9, -0.1),
)
def test_no_crossing_missed_on_1d_network(centers, steepness, level):
    # Far from the bumps the margin tends to -level or +-1 - level, so |level| >= 0.1 keeps it
    # away from 0 there (a margin that hugs 0 for long would need steps at the floor throughout).
    params = bumps(centers, steepness, level)
    a, b = np.array([[-1.5]]), np.array([[1.5]])
    scan = boundary.scan_segments(params, a, b, source=0, target=1, resolution=1e-6, xtol=1e-12)
    grid = np.linspace(-1.5, 1.5, 200_001)
    g = bump_margin(centers, steepness, level, grid)
    s = np.sign(g[g != 0])
    true_changes = int(np.sum(s[1:] != s[:-1]))
    assert scan.complete.all()
    # Between consecutive sign changes of the grid the margin swings to a peak; a pair of
    # crossings can only be missed where that peak is below the scan's certificate.
    roots = np.nonzero(np.sign(g[1:]) * np.sign(g[:-1]) < 0)[0]
    peaks = [np.abs(g[r0:r1 + 1]).max() for r0, r1 in zip(roots[:-1], roots[1:])]
    if all(p > scan.missed_depth[0] for p in peaks):
        assert scan.n_crossings[0] >= true_changes
    # Every crossing found is a true sign change of z_0 - z_1.
    for t in scan.t[0]:
        x = -1.5 + 3.0 * t
        left, right = bump_margin(centers, steepness, level, np.array([x - 1e-9, x + 1e-9]))
        assert np.sign(left) != np.sign(right) or min(abs(left), abs(right)) < 1e-8


def test_crossing_count_known_example():
    # Two bumps up then down: the margin erf(6(x+0.5)) - erf(6(x-0.5)) - 1 crosses zero exactly twice.
    params = bumps([-0.5, 0.5], 6.0, 1.0)
    scan = boundary.scan_segments(params, np.array([[-2.0], [0.0]]), np.array([[2.0], [0.1]]), source=0, target=1)
    assert list(scan.n_crossings) == [2, 0]
    # Only steps at the floor (next to the crossings) leave room for a missed dip, of at most L r / 2.
    assert np.all(scan.missed_depth <= scan.lipschitz * 1e-4 / 2 + 1e-15)
    roots = -2.0 + 4.0 * scan.t[0]
    np.testing.assert_allclose(bump_margin([-0.5, 0.5], 6.0, 1.0, roots), 0.0, atol=1e-7)
    np.testing.assert_allclose(roots, [-roots[1], roots[1]], atol=1e-8)  # symmetric about 0


def test_scan_on_keras_model_finds_sign_changes():
    model = fliplib.erf_network([4, 16, 16, 3], seed=1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 4)) * 2, rng.normal(size=(20, 4)) * 2
    scan = boundary.scan_segments(model, a, b, target=None)
    src = np.argmax(model.predict(a.astype("float32"), verbose=0), axis=1)
    assert scan.complete.all()
    for k in range(len(a)):
        for t in scan.t[k]:
            pts = a[k] + np.array([t - 1e-6, t + 1e-6])[:, None] * (b[k] - a[k])
            g = boundary.margin(model, pts, source=np.full(2, src[k]))
            assert g[0] * g[1] <= 0
    # Same number of prediction changes as a dense grid sees (up to near-tangent pairs).
    t_grid, proba = boundary.segment_outputs(model, a, b, n_points=4001)
    in_src = proba.argmax(axis=2) == src[:, None]
    grid_changes = np.sum(in_src[:, 1:] != in_src[:, :-1], axis=1)
    assert np.all(scan.n_crossings >= grid_changes)


def test_scan_rejects_bad_input():
    params = bumps([0.0], 4.0, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        boundary.scan_segments(params, np.zeros((2, 1)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="lipschitz"):
        boundary.scan_segments(params, np.zeros((1, 1)), np.ones((1, 1)), lipschitz=-1.0)
    with pytest.raises(ValueError, match="shape"):
        boundary.scan_segments(params, np.zeros((1, 2)), np.ones((1, 2)))


def test_margin_lipschitz_bounds_observed_slopes():
    model = fliplib.erf_network([3, 8, 8, 2], seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    gx = boundary.margin(model, x, source=np.zeros(500, int), target=1)
    gy = boundary.margin(model, y, source=np.zeros(500, int), target=1)
    slopes = np.abs(gx - gy) / np.linalg.norm(x - y, axis=1)
    assert slopes.max() <= boundary.margin_lipschitz(model)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_taylor_estimate_exact_for_linear_model(seed):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(5, 2)), rng.normal(size=2)
    params = linear(w, b)
    x = rng.normal(size=(6, 5))
    dist, direction = boundary.taylor_distance(params, x)
    wd = w[:, 0] - w[:, 1]
    g = x @ wd + (b[0] - b[1])
    np.testing.assert_allclose(dist, np.abs(g) / np.linalg.norm(wd), rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(direction, axis=1), 1.0)
    landed = x + dist[:, None] * direction
    np.testing.assert_allclose(landed @ wd + (b[0] - b[1]), 0.0, atol=1e-9)
    along = boundary.distance_along_direction(params, x, direction, max_distance=float(dist.max()) * 2 + 1)
    np.testing.assert_allclose(along, dist, atol=1e-7)


def test_taylor_softmax_option_and_errors():
    params = linear(np.array([[1.0, -1.0]]), np.array([0.0, 0.0]))
    x = np.array([[0.1]])
    d_logit, _ = boundary.taylor_distance(params, x)
    d_soft, _ = boundary.taylor_distance(params, x, output="softmax")
    # g = 2x; p0 - p1 = tanh(g / 2), so the softmax estimate is sinh(g) / ||grad g||.
    np.testing.assert_allclose(d_logit, [0.1])
    np.testing.assert_allclose(d_soft, [np.sinh(0.2) / 2.0])
    with pytest.raises(ValueError, match="output"):
        boundary.taylor_distance(params, x, output="probits")


def test_distance_along_direction_no_crossing_is_inf():
    params = linear(np.array([[1.0, -1.0], [0.0, 0.0]]), np.zeros(2))
    x = np.array([[1.0, 0.0]])
    # Moving along the second feature never changes the class.
    assert np.isinf(boundary.distance_along_direction(params, x, np.array([[0.0, 1.0]]), max_distance=5.0)[0])
    np.testing.assert_allclose(boundary.distance_along_direction(params, x, np.array([[-3.0, 0.0]]), max_distance=5.0),
                               [1.0], atol=1e-8)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_box_exit_distance_lands_on_the_box(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(4, 6))
    u = rng.normal(size=(4, 6))
    s = boundary.box_exit_distance(x, u, 0.0, 1.0)
    edge = x + s[:, None] * u
    assert np.all(edge >= -1e-12) and np.all(edge <= 1 + 1e-12)
    assert np.all(np.min(np.minimum(np.abs(edge), np.abs(edge - 1)), axis=1) < 1e-12)
    inside = x + 0.999 * s[:, None] * u
    assert np.all((inside > 0) & (inside < 1))


def test_box_exit_distance_checks_inside():
    with pytest.raises(ValueError, match="inside"):
        boundary.box_exit_distance(np.array([[2.0]]), np.array([[1.0]]), 0.0, 1.0)
    assert np.isinf(boundary.box_exit_distance(np.array([[0.5]]), np.array([[0.0]]), 0.0, 1.0)[0])


def test_angles_between():
    u = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    v = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(boundary.angles_between(u, v), [90.0, 0.0, 180.0], atol=1e-5)


def test_connectedness_of_known_graphs():
    path = np.zeros((4, 4), bool)
    for i in range(3):
        path[i, i + 1] = path[i + 1, i] = True
    c = boundary.connectedness(path)
    assert c.n_components == 1 and c.min_degree == 1
    np.testing.assert_allclose(c.fraction_connected, 3 / 6)
    two = np.zeros((4, 4), bool)
    two[0, 1] = two[1, 0] = two[2, 3] = two[3, 2] = True
    c2 = boundary.connectedness(two)
    assert c2.n_components == 2 and c2.labels[0] == c2.labels[1] != c2.labels[2]
    with pytest.raises(ValueError, match="symmetric"):
        boundary.connectedness(np.triu(np.ones((3, 3), bool)))


def test_line_adjacency_matches_region_shape():
    # Class 1 wins left of x = 0 and right of x = 2: points on either side are in class 1
    # but their segment crosses class 0's slab.
    params = bumps([0.0, 2.0], 8.0, 1.0)  # margin erf(8x) - erf(8(x-2)) - 1: class 0 only on (0, 2)
    x = np.array([[-1.0], [-0.5], [3.0]])
    g = boundary.margin(params, x, source=0, target=1)
    assert np.all(g < 0)  # all three are in class 1
    adj = boundary.line_adjacency(params, x, cls=1)
    assert adj[0, 1] and not adj[0, 2] and not adj[1, 2]
    assert np.array_equal(adj, adj.T) and not adj.diagonal().any()
    with pytest.raises(ValueError, match="predicted as class 0"):
        boundary.line_adjacency(params, x, cls=0)


def test_pgd_stays_in_budget_and_reaches_target():
    rng = np.random.default_rng(3)
    params = linear(rng.normal(size=(4, 2)), np.zeros(2))
    x = rng.normal(size=(10, 4))
    pred = np.argmax(x @ params.weights[-1].numpy(), axis=1)
    xa = boundary.pgd_l2_attack(params, x, 1 - pred, epsilon=0.3, steps=50, lower=-10.0, upper=10.0)
    assert np.all(np.linalg.norm(xa - x, axis=1) <= 0.3 + 1e-9)
    dist, _ = boundary.taylor_distance(params, x)  # exact here
    flipped = np.argmax(xa @ params.weights[-1].numpy(), axis=1) != pred
    np.testing.assert_array_equal(flipped[dist < 0.25], True)
    np.testing.assert_array_equal(flipped[dist > 0.3], False)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_weighted_taylor_estimate_with_fixed_features_is_exact_for_linear_model(seed):
    """The weighted linearised distance over the free features: the closed form of the
    weighted least-norm step, and the step lands on the boundary without moving fixed features."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    params = linear(w, b)
    x = rng.normal(size=(4, 5))
    weights = rng.uniform(0.2, 3.0, size=5)
    fixed = np.array([False, True, False, False, True])
    src = np.array([0, 1, 2, 0])
    tgt = np.array([1, 2, 0, 2])
    dist, direction = boundary.taylor_distance(params, x, source=src, target=tgt, fixed=fixed,
                                               feature_weights=weights)
    wd = w[:, src].T - w[:, tgt].T  # gradient of c per input
    c = np.einsum("nd,nd->n", x, wd) + b[src] - b[tgt]
    free_grad = wd * ~fixed
    expected = np.abs(c) / np.sqrt(np.sum(free_grad**2 / weights, axis=1))
    np.testing.assert_allclose(dist, expected, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(np.sum(weights * direction**2, axis=1)), 1.0)  # unit in the weighted norm
    assert np.all(direction[:, fixed] == 0)
    landed = x + dist[:, None] * direction
    np.testing.assert_allclose(np.einsum("nd,nd->n", landed, wd) + b[src] - b[tgt], 0.0, atol=1e-9)


def test_taylor_estimate_for_all_targets_matches_each_target():
    rng = np.random.default_rng(3)
    model = fliplib.erf_network([4, 8, 8, 3], seed=1)
    x = rng.normal(size=(5, 4))
    dist, direction = boundary.taylor_distance(model, x, target="all")
    src = boundary.margin(model, x)  # only to know the shape; the source is the predicted class
    assert dist.shape == (5, 3) and direction.shape == (5, 3, 4) and src.shape == (5,)
    predicted = fliplib.baselines.numpy_logits(model, x).argmax(axis=1)
    assert np.all(np.isinf(dist[np.arange(5), predicted]))
    for j in range(3):
        rows = predicted != j
        d_j, u_j = boundary.taylor_distance(model, x[rows], target=j)
        np.testing.assert_allclose(dist[rows, j], d_j, rtol=1e-12)
        np.testing.assert_allclose(direction[rows, j], u_j, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="target must be"):
        boundary.taylor_distance(model, x, target="every")


def test_huge_inputs_leak_no_numpy_warning():
    model = fliplib.erf_network([4, 8, 8, 3], seed=0)
    x = np.random.default_rng(0).normal(size=(3, 4)) * 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = boundary.margin(model, x)
        dist, _ = boundary.taylor_distance(model, x)
        scan = boundary.scan_segments(model, x, -x, max_evaluations=20)
        angles = boundary.angles_between(x, 2 * x)
        exit_distance = boundary.box_exit_distance(np.zeros((3, 4)), np.full((3, 4), 1e-320), -1.0, 1.0)
    assert np.all(np.isfinite(g)) and np.all(np.isinf(dist))  # saturated erf: no slope, no estimate
    assert np.all(np.isfinite(scan.length))
    np.testing.assert_allclose(angles, 0.0, atol=1e-6)
    assert np.all(np.isinf(exit_distance))  # 1 / 1e-320 overflows: the box is never left in float64


def test_points_must_be_rectangular_numbers():
    model = fliplib.erf_network([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="x must be a rectangular array"):
        boundary.margin(model, [[0.0, 1.0], [2.0]])
    with pytest.raises(TypeError, match="x must hold real numbers"):
        boundary.taylor_distance(model, np.array([["a", "b"]]))
