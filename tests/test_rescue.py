"""Rescue paths: feasibility restoration, bisection, witness starts and the boundary walk."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fliplib
from fliplib import rescue
from fliplib.baselines import numpy_logits
from fliplib.params import NetworkParams
from test_flip import linear_network, three_class_linear_network

def test_feasibility_restoration_closes_a_small_gap_at_kinks():
    # Points a little off the boundary of a ReLU network (where the SQP can stall between linear
    # pieces): the restoration must remove the violation (gap and other classes) without going far.
    model = fliplib.prelu_network([4, 12, 12, 3], alpha=0.0, seed=3)
    params = fliplib.params.network_params(model)
    x = np.random.default_rng(3).normal(size=(10, 4))
    res = fliplib.closest_flip_points(model, x, "all")
    found = np.argwhere(res.success)
    on = res.x[found[:, 0], found[:, 1]]
    off = on + np.random.default_rng(4).normal(scale=1e-3, size=on.shape)
    src, tgt = res.source[found[:, 0], found[:, 1]], found[:, 1]
    box = np.full_like(off, 1e3)
    restored, evals = rescue.restore_feasibility(params, off, -box, box, src, tgt, margin=1e-3, gap_tol=1e-6)
    c, violation, scale = rescue.violation(params, restored, src, tgt, 1e-3)
    rows = np.arange(len(c))
    assert np.all(np.abs(c[rows, tgt]) <= 1e-7 * scale)
    assert np.all(violation <= 1e-7 * scale)
    assert np.all(np.linalg.norm(restored - off, axis=1) <= 10 * np.linalg.norm(off - on, axis=1))
    assert np.all(evals >= 1)


def test_feasibility_restoration_repairs_another_class_while_keeping_the_gap_closed():
    # Source 0, target 1: c_1 = -x_0 is (almost) zero, but class 2 is above: c_2 = -(x_0 + x_1) < margin.
    # The step that repairs c_2 moves x_0 and changes the sign of the tiny c_1; it must still repair c_2
    # (not bisect back onto c_1 = 0 and stop).
    params = three_class_linear_network()
    margin = 1e-3
    x = np.array([[-1e-9, 0.5], [1e-9, 0.2], [0.0, 0.05]])
    src, tgt = np.zeros(3, dtype=int), np.ones(3, dtype=int)
    box = np.full_like(x, 10.0)
    restored, evals = rescue.restore_feasibility(params, x, -box, box, src, tgt, margin=margin, gap_tol=1e-6)
    c, violation, _ = rescue.violation(params, restored, src, tgt, margin)
    np.testing.assert_allclose(c[:, 1], 0.0, atol=1e-12)
    assert np.all(c[:, 2] >= margin * (1 - 1e-9))
    assert np.all(violation <= 1e-12)
    assert np.all(evals <= 2)  # one linearised step (and one more where rounding leaves c_2 an ulp short)
    # The least-norm repair: x_0 = 0, x_1 = -margin.
    np.testing.assert_allclose(restored, [[0.0, -margin]] * 3, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(start=st.floats(-1, 1), hi=st.floats(-0.99, 1).filter(lambda v: abs(v) > 1e-3))
def test_bisection_finds_a_crossing_on_the_bound_and_stays_in_the_box(start, hi):
    # z_0 - z_1 = x_0 - hi changes sign at the upper bound itself: the bisection must end there,
    # and never outside the box (the result is clipped against rounding of start + t (end - start)).
    assume(start < hi)
    params = linear_network(np.array([1.0, 0.0]), -hi)
    start_x = np.array([[start, 0.0]])
    end_x = np.array([[hi, 0.0]])
    lo_b, hi_b = np.array([[-1.0, -1.0]]), np.array([[hi, 1.0]])
    found = np.clip(rescue._bisect_gap(params, start_x, end_x, np.array([0]), np.array([1]), 60), lo_b, hi_b)
    assert np.all(found >= lo_b) and np.all(found <= hi_b)
    assert abs(found[0, 0] - hi) <= 1e-12 * max(1.0, abs(hi)) + abs(hi - start) * 2.0**-50


@pytest.mark.parametrize("activation", ["prelu", "erf"])
def test_witness_starts_are_flip_points_between_source_and_target(activation):
    sizes = [6, 20, 20, 4]
    if activation == "prelu":
        model = fliplib.prelu_network(sizes, alpha=0.0, seed=4)
    else:
        model = fliplib.erf_network(sizes, sigma=0.5, seed=4)
    params = fliplib.params.network_params(model)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 6))
    label = np.argmax(numpy_logits(params, x), axis=1)
    src = label[:20]
    tgt = (src + 1 + rng.integers(0, 3, 20)) % 4
    box = np.full((20, 6), 3.0)
    starts, found = rescue.witness_starts(params, x[:20], -box, box, np.ones((20, 6)), src, tgt, x[20:], n_keep=3)
    assert starts.shape == (20, 3, 6) and found.shape == (20, 3)
    assert found.sum() >= 5
    assert np.all(starts[~found] == np.repeat(x[:20, None], 3, axis=1)[~found])
    # nearest first, and the found ones before the others
    dist = np.where(found, np.linalg.norm(starts - x[:20, None], axis=2), np.inf)
    assert np.all(np.diff(dist, axis=1)[np.isfinite(dist[:, 1:])] >= 0)
    assert not np.any(~found[:, :-1] & found[:, 1:])
    src, tgt = np.repeat(src, 3)[found.ravel()], np.repeat(tgt, 3)[found.ravel()]
    starts, found = starts.reshape(-1, 6)[found.ravel()], np.ones(len(src), bool)
    z = numpy_logits(params, starts)
    rows = np.arange(len(src))
    scale = np.maximum(1.0, np.abs(z[rows, src[found]]))
    assert np.all(np.abs(z[rows, src[found]] - z[rows, tgt[found]]) <= 1e-9 * scale)
    others = z.copy()
    others[rows, src[found]] = others[rows, tgt[found]] = -np.inf
    assert np.all(others.max(axis=1) <= z[rows, src[found]] + 1e-9 * scale)
    assert np.all(np.abs(starts) <= 3.0)


def test_witness_starts_cross_towards_the_nearest_witnesses_of_the_target_class():
    # z_0 - z_1 = a.x + c: with one witness per problem, the start is where the segment to the
    # nearest witness of class 1 crosses the hyperplane, whichever chunk of problems it is in.
    rng = np.random.default_rng(7)
    a, c = np.array([1.0, -2.0, 0.5]), -0.5
    params = linear_network(a, c)
    x0 = rng.normal(size=(9, 3))
    x0 = x0[x0 @ a + c > 0.1]  # class 0
    witnesses = 6.0 * rng.normal(size=(200, 3))
    n = len(x0)
    src, tgt, box, w = np.zeros(n, dtype=int), np.ones(n, dtype=int), np.full_like(x0, 1e3), np.ones_like(x0)
    starts = [rescue.witness_starts(params, x0, -box, box, w, src, tgt, witnesses, n_witnesses=1, chunk=chunk)
              for chunk in (1, 4, 256)]
    in_target = witnesses[witnesses @ a + c < 0]
    nearest = in_target[np.argmin(((x0[:, None] - in_target[None]) ** 2).sum(axis=2), axis=1)]
    t = -(x0 @ a + c) / ((nearest - x0) @ a)
    expected = x0 + t[:, None] * (nearest - x0)
    for start, found in starts:
        assert start.shape == (n, 1, 3) and np.all(found)
        np.testing.assert_allclose(start[:, 0], expected, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(start, starts[0][0])


def test_witness_starts_keep_the_nearest_crossings_towards_several_witnesses(monkeypatch):
    # Every segment to a witness of class 1 crosses the hyperplane z_0 = z_1 once: from the 6
    # nearest witnesses, the 4 crossings nearest to x0 are kept, nearest first.
    rng = np.random.default_rng(8)
    a, c = np.array([1.0, -2.0, 0.5]), -0.5
    params = linear_network(a, c)
    x0 = rng.normal(size=(12, 3))
    x0 = x0[x0 @ a + c > 0.1]
    witnesses = 6.0 * rng.normal(size=(300, 3))
    n = len(x0)
    src, tgt, box, w = np.zeros(n, dtype=int), np.ones(n, dtype=int), np.full_like(x0, 1e3), np.ones_like(x0)
    start, found = rescue.witness_starts(params, x0, -box, box, w, src, tgt, witnesses, n_witnesses=6, n_keep=4)
    for chunk in (1, 3):  # the same in any chunks of problems
        again = rescue.witness_starts(params, x0, -box, box, w, src, tgt, witnesses, n_witnesses=6, n_keep=4,
                                      chunk=chunk)
        np.testing.assert_array_equal(again[0], start)
        np.testing.assert_array_equal(again[1], found)
    in_target = witnesses[witnesses @ a + c < 0]
    for k in range(n):
        near = in_target[np.argsort(np.linalg.norm(in_target - x0[k], axis=1))[:6]]
        t = -(x0[k] @ a + c) / ((near - x0[k]) @ a)
        crossings = x0[k] + t[:, None] * (near - x0[k])
        expected = crossings[np.argsort(np.linalg.norm(crossings - x0[k], axis=1))[:4]]
        assert np.all(found[k])
        np.testing.assert_allclose(start[k], expected, rtol=0, atol=1e-9)
    # the global search's scan: float32 forward passes, 24 halvings of the sampled interval
    dtypes, real = set(), rescue.logits
    monkeypatch.setattr(rescue, "logits", lambda *a, dtype: dtypes.add(dtype) or real(*a, dtype=dtype))
    fast, found32 = rescue.witness_starts(params, x0, -box, box, w, src, tgt, witnesses, n_witnesses=6, n_keep=4,
                                          **fliplib.search.SCAN)
    assert np.all(found32) and dtypes == {tf.float32}
    np.testing.assert_allclose(fast, start, rtol=0, atol=1e-5)


def test_nearest_crossings_refine_only_the_nearest_and_skip_invalid_segments(monkeypatch):
    # z_0 - z_1 = a.x + c: a segment from x0 at angle theta to -a crosses the hyperplane at
    # distance h / cos(theta); the two nearest of the valid segments are kept, nearest first.
    a, c = np.array([1.0, -2.0, 0.5]), -0.5
    params = linear_network(a, c)
    x0 = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 1.0]])
    h = (x0 @ a + c) / np.linalg.norm(a)  # the distance to the hyperplane, along -a / |a|
    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(2, 6, 3))
    dirs[:, 0] = -a / np.linalg.norm(a)  # the nearest crossing of all
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    ends = x0[:, None] + 20.0 * dirs
    valid = np.ones((2, 6), bool)
    valid[1, 0] = False  # problem 1 may not use its nearest segment
    refined = []
    real = rescue.first_crossing

    def spy(*args, **kwargs):
        if kwargs.get("n_halvings", 60) > 0:
            refined.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(rescue, "first_crossing", spy)
    pts, dist, entered = rescue.nearest_crossings(params, x0, ends, np.zeros(2, int), np.ones(2, int),
                                                  np.ones_like(x0), 2, valid=valid, n_samples=64)
    assert refined == [int(np.isfinite(dist).sum())] and refined[0] <= 4  # only the kept ones are bisected
    cos = np.einsum("nsd,d->ns", dirs, -a / np.linalg.norm(a))
    t = np.where((cos > 0) & valid, h[:, None] / np.where(cos > 0, cos, 1.0), np.inf)  # exact crossings
    t[t > 20.0] = np.inf
    expected = np.sort(t, axis=1)[:, :2]
    np.testing.assert_allclose(dist, expected, rtol=1e-9)
    np.testing.assert_allclose(pts[0, 0], x0[0] - h[0] * a / np.linalg.norm(a), atol=1e-9)
    assert np.all(entered[np.isfinite(dist)] == 1)


def test_boundary_walk_reaches_the_closest_point_of_a_hyperplane():
    # z_0 - z_1 = a.x + c: the witness start (where the segment to a far point of class 1 crosses)
    # is not the closest flip point; the walk along the boundary must reach the projection.
    a, c = np.array([1.0, 2.0, -1.0]), -1.0
    params = linear_network(a, c)
    x0 = np.array([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    witness = np.array([[-5.0, -4.0, 6.0]])
    box = np.full_like(x0, 1e3)
    src, tgt = np.zeros(2, dtype=int), np.ones(2, dtype=int)
    start, found = rescue.witness_starts(params, x0, -box, box, np.ones_like(x0), src, tgt, witness)
    start, found = start[:, 0], found[:, 0]
    walked, evals, found_w = rescue.boundary_walk(params, x0, -box, box, np.ones_like(x0), src, tgt, witness, margin=1e-3)
    exact = np.abs(x0 @ a + c) / np.linalg.norm(a)
    assert np.all(found) and np.all(found_w)
    assert np.all(np.linalg.norm(start - x0, axis=1) > 1.01 * exact)
    np.testing.assert_allclose(np.linalg.norm(walked - x0, axis=1), exact, rtol=1e-6)
    np.testing.assert_allclose(walked @ a + c, 0.0, atol=1e-9)
    assert np.all(evals >= 1)
