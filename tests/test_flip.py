"""Closest flip points: feasibility, optimality, agreement with SLSQP, constraints and errors."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import fliplib
from fliplib.baselines import numpy_logits, slsqp_flip_point
from fliplib import flip
from fliplib.params import NetworkParams, network_params
from fliplib.search import nearest_linearised_class


def linear_network(a, c):
    """A 2-class network whose logit difference z_0 - z_1 = a.x + c (a PReLU net with slope 1)."""
    d = len(a)
    w1 = tf.constant(np.eye(d))
    w2 = tf.constant(np.stack([a, np.zeros(d)], axis=1))
    b2 = tf.constant(np.array([c, 0.0]))
    return NetworkParams(weights=(w1, w2), biases=(tf.zeros(d, tf.float64), b2), activation="prelu", scales=(1.0,))


def check_evidence(res, model, gap_tol=1e-6):
    """Every success is a flip point by the success rule, recomputed from the network's logits at
    ``res.x`` (not from the result's own evidence), and every status matches success."""
    ok = res.success
    z = numpy_logits(model, res.x[ok])
    rows = np.arange(len(z))
    src, tgt = res.source[ok], res.target[ok]
    tol = gap_tol * np.maximum(1.0, np.abs(z[rows, src]))
    assert np.all(np.abs(z[rows, src] - z[rows, tgt]) <= tol * (1 + 1e-9))
    others = z.copy()
    others[rows, src] = others[rows, tgt] = -np.inf
    assert np.all(z[rows, src] - others.max(axis=1) > tol * (1 - 1e-9))
    assert np.all(res.bound_violation[ok] == 0)
    assert np.all((res.status[ok] == 0) | (res.status[ok] == 1))
    assert np.all(res.status[~ok & (res.status != -1)] >= 2)


@settings(deadline=None, max_examples=40)  # correctness, not speed: the first example compiles the solver
# Found by hypothesis: the solver stops (xtol, opt_tol) 1e-7 from the projection along the
# boundary, where the distance is stationary; the point is checked to 1e-6, the distance to 1e-7.
@example(a=[1.2564918570019463, 1.2564918570019463, 1.789113817888465], c=0.0, x=[1.0, 1.5, 1.75])
@given(
    a=st.lists(st.floats(-3, 3), min_size=3, max_size=3).filter(lambda v: np.linalg.norm(v) > 0.1),
    c=st.floats(-2, 2),
    x=st.lists(st.floats(-2, 2), min_size=3, max_size=3),
)
def test_linear_model_closed_form(a, c, x):
    a, x = np.array(a), np.array(x)
    net = linear_network(a, c)
    f = a @ x + c
    if abs(f) < 1e-6:
        return
    res = fliplib.closest_flip_points(net, x[None], int(f > 0))
    expected = x - f / (a @ a) * a
    assert res.success[0]
    np.testing.assert_allclose(res.x[0], expected, atol=1e-6 * max(1, np.abs(expected).max()))
    assert res.distance[0] == pytest.approx(abs(f) / np.linalg.norm(a), rel=1e-7)
    # Moving along the direction by less than the distance never changes the class.
    u = (res.x[0] - x) / res.distance[0]
    for s in np.linspace(0, 0.999, 7) * res.distance[0]:
        assert np.sign(a @ (x + s * u) + c) == np.sign(f)


@settings(deadline=None, max_examples=30)
@given(
    a=st.lists(st.floats(-3, 3), min_size=3, max_size=3).filter(lambda v: np.linalg.norm(v) > 0.1),
    c=st.floats(-2, 2),
    x=st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    w=st.lists(st.floats(0.1, 10), min_size=3, max_size=3),
)
def test_linear_model_weighted_closed_form(a, c, x, w):
    # min sqrt(sum w (x_hat - x)^2) s.t. a.x_hat + c = 0: x_hat = x - f W^-1 a / (a^T W^-1 a),
    # at distance |f| / sqrt(a^T W^-1 a).
    a, x, w = np.array(a), np.array(x), np.array(w)
    f = a @ x + c
    if abs(f) < 1e-6:
        return
    res = fliplib.closest_flip_points(linear_network(a, c), x[None], int(f > 0), feature_weights=w)
    expected = x - f * (a / w) / (a @ (a / w))
    assert res.success[0] and res.status[0] == 0
    np.testing.assert_allclose(res.x[0], expected, atol=1e-7 * max(1, np.abs(expected).max()))
    assert res.distance[0] == pytest.approx(abs(f) / np.sqrt(a @ (a / w)), rel=1e-7)


def test_evidence_measures_optimality_and_bounds_on_a_linear_model():
    # z_0 - z_1 = a.x + c.  The projection of x is optimal (residual ~ 0, status 0); the projection
    # moved along the boundary is feasible but not optimal (status 1, residual = the tangent
    # part's share of x_hat - x); a point outside the box is status 4.
    a, c = np.array([1.0, 2.0, -1.0]), -3.0
    net = linear_network(a, c)
    x = np.array([[0.2, 0.1, 0.0]])
    f = a @ x[0] + c
    projection = x - f / (a @ a) * a
    tangent = np.array([2.0, -1.0, 0.0])  # a . tangent = 0
    shifted = projection + 0.5 * tangent
    ev = fliplib.flip_evidence(net, np.vstack([x, x]), np.vstack([projection, shifted]), [1, 1], [0, 0])
    assert ev["optimality"][0] < 1e-8
    normal, along = projection - x, 0.5 * tangent
    expected = np.linalg.norm(along) / np.linalg.norm(normal + along)
    assert ev["optimality"][1] == pytest.approx(expected, rel=1e-6)
    np.testing.assert_array_equal(flip.status_from_evidence(ev), [0, 1])
    outside = fliplib.flip_evidence(net, x, shifted, [1], [0], lower=-0.5, upper=1.5)  # shifted[0, 0] = 1.63
    assert outside["bound_violation"][0] == pytest.approx(shifted[0, 0] - 1.5)
    assert flip.status_from_evidence(outside)[0] == 4


def test_linear_model_with_bounds_and_fixed_features():
    a = np.array([1.0, 2.0, -1.0])
    net = linear_network(a, -3.0)  # the boundary is a.x = 3
    x = np.array([[0.2, 0.1, 0.0]])
    res = fliplib.closest_flip_points(net, x, 0, upper=[10.0, 0.5, 10.0], lower=-10.0)
    # Unbounded solution would move x_2 to 0.1 + 2 * 2.6 / 6 = 0.9667 > 0.5: the bound binds.
    assert res.success[0] and res.x[0, 1] == pytest.approx(0.5)
    ref = slsqp_flip_point(net, x[0], 1, 0, lower=-10.0, upper=[10.0, 0.5, 10.0])
    assert res.distance[0] == pytest.approx(ref["distance"], rel=1e-6)
    fixed = fliplib.closest_flip_points(net, x, 0, fixed=np.array([True, False, True]))
    assert fixed.success[0] and fixed.status[0] == 0  # a fixed feature's multiplier may have either sign
    assert fixed.x[0, 0] == x[0, 0] and fixed.x[0, 2] == x[0, 2]
    assert fixed.x[0, 1] == pytest.approx((3 - 0.2) / 2)


RESTARTS_SHARP = 2


def random_problems(sizes, sigma, n_points, seed):
    model = fliplib.erf_network(sizes, sigma=sigma, seed=seed)
    x = np.random.default_rng(seed).normal(size=(n_points, sizes[0]))
    return model, x


# Small and medium random erf networks, sigma from 0.15 (gradients explode: median ||J|| about 8,
# layer norms up to 9) to 3.0 (near linear).
AGREEMENT_CASES = [
    ([4, 12, 12, 3], 1.0, 20, 0),
    ([6, 16, 16, 16, 16, 4], 0.5, 15, 1),
    ([6, 16, 16, 16, 16, 4], 3.0, 15, 2),
    ([8, 20, 20, 20, 20, 20, 20, 20, 20, 3], 1.0, 20, 3),
    ([5, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 2], 0.7, 30, 4),
    ([6, 16, 16, 16, 16, 4], 0.15, 10, 5),
]
#: The sharp network has many local minima: SLSQP gets three starts, so fliplib gets restarts.
AGREEMENT_OPTIONS = {0.15: {"restarts": RESTARTS_SHARP}}


def test_an_inequality_with_a_negative_multiplier_is_not_optimal():
    # From x = (-1, -2) the point (0, -margin) lies on z_0 = z_1 with class 2 exactly at the
    # margin, and x_hat - x = (1, 2 - margin) is a combination of the two gradients, but only
    # with a negative multiplier on class 2's inequality: moving off it, to (0, -2), is closer.
    # The residual is the part outside the cone, (0, 2 - margin), not zero.
    params = three_class_linear_network()
    margin = 1e-3
    x, point = np.array([[-1.0, -2.0]]), np.array([[0.0, -margin]])
    ev = fliplib.flip_evidence(params, x, point, [0], [1], margin=margin)
    step = point[0] - x[0]
    assert ev["optimality"][0] == pytest.approx(step[1] / np.linalg.norm(step), rel=1e-9)
    assert flip.status_from_evidence(ev)[0] == 1


def test_the_optimality_residual_is_scipys_bounded_least_squares():
    # The batched residual (every sign pattern of the active inequalities) against SciPy's
    # lsq_linear on the same cone, one point at a time (fliplib.plane.kkt_residual): at flip
    # points of a four-class network, where a third class often sits at the margin, and at
    # the same points moved along the boundary.
    from fliplib.plane import kkt_residual

    net = fliplib.erf_network([3, 12, 12, 4], sigma=1.0, seed=5)
    x = np.random.default_rng(5).normal(size=(12, 3))
    res = fliplib.closest_flip_points(net, x, "all")
    i, j = np.nonzero(res.success)
    moved = res.x[i, j] + 1e-3 * np.random.default_rng(6).normal(size=(len(i), 3))
    at_margin = 0
    for points in (res.x[i, j], moved):
        ev = fliplib.flip_evidence(net, x[i], points, res.source[i, j], j, margin=1e-3)
        for k in range(len(i)):
            expected = kkt_residual(net, x[i[k]], points[k], int(res.source[i[k], j[k]]), int(j[k]),
                                    margin=1e-3, active_tol=1e-4)
            assert ev["optimality"][k] == pytest.approx(expected, rel=1e-6, abs=1e-9)
        at_margin += int(np.sum(ev["min_margin"] <= 1e-3 + 1e-4))
    assert at_margin >= 3  # the cone, not just the equality's line, was tested


def test_agrees_with_slsqp_on_at_least_200_problems():
    wins, feasible_both, total, slsqp_feasible, ours, optimal = 0, 0, 0, 0, 0, 0
    missed = []
    for sizes, sigma, n_points, seed in AGREEMENT_CASES:
        model, x = random_problems(sizes, sigma, n_points, seed)
        if sigma in AGREEMENT_OPTIONS:  # the sharp network really has exploding gradients
            assert np.median(np.linalg.norm(fliplib.logit_jacobian(model, x), axis=(1, 2))) > 5
        res = fliplib.closest_flip_points(model, x, 'all', options=dict(fallback='closer', **AGREEMENT_OPTIONS.get(sigma, {})))
        ours += int(res.success.sum())
        optimal += int(np.sum(res.success & (res.status == 0)))
        rng = np.random.default_rng(seed)
        for i in range(n_points):
            for j in range(sizes[-1]):
                if res.status[i, j] == -1:
                    continue
                total += 1
                src = int(res.source[i, j])
                best = np.inf
                for start in (x[i], x[i] + 0.1 * rng.normal(size=x.shape[1]), x[i] + 0.3 * rng.normal(size=x.shape[1])):
                    ref = slsqp_flip_point(model, x[i], src, j, x_start=start)
                    z = numpy_logits(model, ref["x"])[0]
                    others = np.delete(z, [src, j])
                    tol = 1e-6 * max(1.0, abs(z[src]))
                    if abs(z[src] - z[j]) <= tol and np.all(z[src] - others > tol):
                        best = min(best, ref["distance"])
                if np.isfinite(best):
                    slsqp_feasible += 1
                    if not res.success[i, j]:
                        missed.append((sizes, i, j))
                        continue
                    feasible_both += 1
                    wins += res.distance[i, j] <= best * 1.001
    assert total >= 200
    # The oracle itself must work: a comparison with an SLSQP that never finds a flip point would
    # pass vacuously.
    assert slsqp_feasible >= 0.75 * total and feasible_both >= 0.75 * total, (slsqp_feasible, feasible_both, total)
    assert not missed, f"fliplib failed where SLSQP found a flip point: {missed[:5]}"
    assert wins >= 0.95 * feasible_both, f"fliplib within 0.1% of SLSQP's best on only {wins}/{feasible_both}"
    # Not only close: first-order optimal (status 0) on nearly all of its flip points.
    assert optimal >= 0.95 * ours, f"status 0 on only {optimal} of {ours} flip points"


def test_restarts_never_lose_a_flip_point_and_are_reproducible():
    model, x = random_problems([6, 16, 16, 16, 16, 4], 0.15, 6, 5)
    # opt_tol = inf switches the last step off (F again from each status-1 answer): it is
    # itself a restart, which can land on a closer flip point than the restarts' answer.
    plain = fliplib.closest_flip_points(model, x, "all", search="local", options=dict(opt_tol=np.inf))
    more = fliplib.closest_flip_points(model, x, "all", search="local",
                                       options=dict(restarts=2, seed=1, opt_tol=np.inf))
    again = fliplib.closest_flip_points(model, x, "all", search="local",
                                        options=dict(restarts=2, seed=1, opt_tol=np.inf))
    done = plain.status != -1
    assert np.all(more.success[plain.success])
    # Never farther, up to rounding: the restarts change the batch's shape, which may move the
    # first solve's answer in its last digits.
    assert np.all(more.distance[plain.success] <= plain.distance[plain.success] * (1 + 1e-7))
    assert np.any(more.distance[plain.success] < plain.distance[plain.success] * (1 - 1e-3))  # they help here
    assert np.all(more.n_jacobian_evals[done] > plain.n_jacobian_evals[done])
    np.testing.assert_array_equal(more.x, again.x)
    check_evidence(more, model)


def test_all_targets_shapes_and_closest():
    model, x = random_problems([5, 12, 12, 4], 1.0, 6, 7)
    res = fliplib.closest_flip_points(model, x, "all")
    assert res.x.shape == (6, 4, 5) and res.distance.shape == (6, 4)
    src = np.argmax(numpy_logits(model, x), axis=1)
    np.testing.assert_array_equal(res.source[:, 0], src)
    assert np.all(res.status[np.arange(6), src] == -1) and np.all(np.isinf(res.distance[np.arange(6), src]))
    assert not np.any(res.success[np.arange(6), src])
    best = res.closest()
    assert best.x.shape == (6, 5)
    d = np.where(res.success, res.distance, np.inf)
    np.testing.assert_array_equal(best.distance[best.success], d.min(axis=1)[best.success])
    frame = res.to_frame()
    assert len(frame) == 24 and {"distance", "logit_gap", "status"} <= set(frame.columns)


def test_keep_closer_takes_the_better_answer_of_a_second_attempt():
    model, x = random_problems([4, 16, 16, 3], 0.5, 12, 5)
    target = (np.argmax(numpy_logits(model, x), axis=1) + 1) % 3
    cheap = fliplib.closest_flip_points(model, x, target, method="direct", search="local",
                                        options=dict(max_iter=3))
    rows = np.arange(0, 12, 2)
    second = fliplib.closest_flip_points(model, x[rows], target[rows])
    before = cheap.distance.copy()
    merged = cheap.keep_closer(rows, second)
    np.testing.assert_array_equal(cheap.distance, before)  # the first result is untouched
    expected = before.copy()
    expected[rows] = np.minimum(before[rows], np.where(second.success, second.distance, np.inf))
    np.testing.assert_array_equal(merged.distance, expected)
    others = np.setdiff1d(np.arange(12), rows)
    np.testing.assert_array_equal(merged.x[others], cheap.x[others])
    took = rows[second.success & (second.distance < before[rows])]
    assert took.size  # the second attempt improves something here
    np.testing.assert_array_equal(merged.status[took], second.status[np.isin(rows, took)])
    check_evidence(merged, model)
    # "all": the target axis is carried along
    every = fliplib.closest_flip_points(model, x[:3], "all", search="local")
    again = fliplib.closest_flip_points(model, x[[2]], "all")
    both = every.keep_closer([2], again)
    assert both.x.shape == every.x.shape
    assert np.all(both.distance[2] <= every.distance[2])


def _hand_built(distance, success, source, target, *, fill, n_features=2):
    """A FlipResult whose every entry holds ``fill`` (and the given distances), to trace merges."""
    success = np.asarray(success, dtype=bool)
    shape = success.shape
    status = np.where(success, 0, 2)
    messages = np.array([flip.STATUS_MESSAGES[int(s)] for s in status.ravel()], dtype=object)
    return flip.FlipResult(
        x=np.full(shape + (n_features,), fill), distance=np.where(success, distance, np.inf),
        success=success, status=status, message=messages.reshape(shape),
        source=np.broadcast_to(np.asarray(source), shape).copy(),
        target=np.broadcast_to(np.asarray(target), shape).copy(),
        logit_gap=np.full(shape, fill), min_margin=np.full(shape, fill),
        bound_violation=np.full(shape, fill), optimality=np.full(shape, fill),
        n_jacobian_evals=np.full(shape, int(fill)), n_homotopy_steps=np.full(shape, int(fill)),
        search_radius=np.full(shape, fill), n_starts=np.full(shape, int(fill)))


def test_keep_closer_replaces_exactly_the_better_answers():
    first = _hand_built([1.0, 2.0, 5.0, 3.0], [True, True, False, True], 0, 1, fill=0.0)
    # at rows 0, 1, 2, 3 (the last given as -1): closer, farther, failed again, equal
    second = _hand_built([0.5, 2.5, 4.0, 3.0], [True, True, False, True], 0, 1, fill=7.0)
    merged = first.keep_closer([0, 1, 2, -1], second)
    np.testing.assert_array_equal(merged.distance, [0.5, 2.0, np.inf, 3.0])
    taken = np.array([True, False, False, False])
    for name in first._per_point_fields():
        if name in ("distance", "source", "target"):
            continue
        value = getattr(merged, name)
        expected = np.where(taken.reshape((4,) + (1,) * (value.ndim - 1)), getattr(second, name),
                            getattr(first, name))
        np.testing.assert_array_equal(value, expected, err_msg=name)
    assert np.all(first.x == 0.0)  # the first result is untouched
    # no rows: nothing changes
    empty = _hand_built(np.zeros(0), np.zeros(0, bool), 0, 1, fill=7.0)
    np.testing.assert_array_equal(first.keep_closer([], empty).distance, first.distance)
    # (n, r, d): per target class, inside a row
    grid = _hand_built(np.ones((3, 2)), np.ones((3, 2), bool), 0, [[1, 2]], fill=0.0, n_features=4)
    row = _hand_built([[0.5, 1.5]], [[True, True]], 0, [[1, 2]], fill=7.0, n_features=4)
    both = grid.keep_closer(np.array([1], dtype=np.uint8), row)
    np.testing.assert_array_equal(both.distance, [[1, 1], [0.5, 1], [1, 1]])
    assert np.all(both.x[1, 0] == 7.0) and np.all(both.x[1, 1] == 0.0)
    assert np.all(np.delete(both.x, 1, axis=0) == 0.0)
    assert both.message[1, 0] == flip.STATUS_MESSAGES[0]


def test_keep_closer_refuses_mismatched_attempts():
    model, x = random_problems([4, 16, 3], 1.0, 5, 6)
    source = np.argmax(numpy_logits(model, x), axis=1)
    res = fliplib.closest_flip_points(model, x, (source + 1) % 3, search="local")
    other = fliplib.closest_flip_points(model, x[:2], (source[:2] + 2) % 3, search="local")
    with pytest.raises(ValueError, match="different problems"):
        res.keep_closer([0, 1], other)
    same = fliplib.closest_flip_points(model, x[:2], (source[:2] + 1) % 3, search="local")
    with pytest.raises(ValueError, match="other has"):
        res.keep_closer([0, 1, 2], same)
    with pytest.raises(ValueError, match="repeat"):
        res.keep_closer([1, 1], same)
    with pytest.raises(IndexError, match="rows"):
        res.keep_closer([0, 9], same)
    with pytest.raises(ValueError, match="integer"):
        res.keep_closer([0.0, 1.0], same)


def test_every_returned_point_carries_correct_evidence():
    model, x = random_problems([5, 12, 12, 12, 3], 0.8, 25, 11)
    res = fliplib.closest_flip_points(model, x, "all", lower=-4.0, upper=4.0)
    done = res.status != -1
    ev = fliplib.flip_evidence(model, np.repeat(x, 3, axis=0)[done.ravel()], res.x[done], res.source[done],
                               res.target[done], lower=-4.0, upper=4.0)
    # the gap is a difference of logits of order one, recomputed in batches of another make-up:
    # equal up to float64 rounding of those logits, not to a share of a gap near zero
    np.testing.assert_allclose(ev["logit_gap"], res.logit_gap[done], rtol=1e-7, atol=1e-13)
    np.testing.assert_allclose(ev["distance"], res.distance[done])
    ok = res.success[done]
    tol = 1e-6 * np.maximum(1.0, ev["z_source"])
    assert np.all(ev["logit_gap"][ok] <= tol[ok]) and np.all(ev["min_margin"][ok] > tol[ok])
    assert np.all(res.x[done][ok] >= -4.0) and np.all(res.x[done][ok] <= 4.0)
    assert np.all(res.optimality[done][res.status[done] == 0] <= 1e-3)
    # The predicted class at the flip point is i or j (up to the tie).
    z = numpy_logits(model, res.x[done][ok])
    top2 = np.argsort(z, axis=1)[:, -2:]
    pair = np.stack([res.source[done][ok], res.target[done][ok]], axis=1)
    assert np.all(np.sort(top2, axis=1) == np.sort(pair, axis=1))
    check_evidence(res, model)


def test_direct_and_homotopy_agree_on_a_benign_network():
    model, x = random_problems([4, 10, 10, 3], 1.0, 10, 5)
    h = fliplib.closest_flip_points(model, x, "all", search="local", method="homotopy")
    d = fliplib.closest_flip_points(model, x, "all", search="local", method="direct")
    # On erf networks the default fallback ("auto") is "failed": the same work, the same answers.
    f = fliplib.closest_flip_points(model, x, 'all', search="local", method='homotopy', options=dict(fallback='failed'))
    np.testing.assert_array_equal(f.n_jacobian_evals, h.n_jacobian_evals)
    np.testing.assert_array_equal(f.x, h.x)
    both = h.success & d.success
    assert both.sum() >= 15
    np.testing.assert_allclose(h.distance[both], d.distance[both], rtol=1e-3)
    assert np.all(d.n_homotopy_steps == 0) and np.any(h.n_homotopy_steps > 0)


def test_homotopy_succeeds_where_direct_fails_on_saturated_network():
    """Narrow erf widths (sigma = 0.1) make every layer steep (per-layer Jacobian norms >> 1) and
    the network nearly piecewise constant: gradients explode near the boundaries and vanish
    between them.  On this seeded network the homotopy path finds flip points that the direct
    method misses.  (It is not uniformly better here: the direct method also finds some that
    the path misses, which is why the default fallback on erf networks is ``"failed"``.)
    """
    model = fliplib.erf_network([8] + [30] * 6 + [3], sigma=0.1, seed=0)
    x = np.random.default_rng(0).normal(size=(40, 8))
    h = fliplib.closest_flip_points(model, x, "all", method="homotopy", search="local", options=dict(fallback=None))
    d = fliplib.closest_flip_points(model, x, "all", method="direct", search="local")
    assert np.sum(h.success & ~d.success) >= 3
    assert np.median(fliplib.layer_jacobian_norms(model, x[:5])) > 1
    both = fliplib.closest_flip_points(model, x, "all", method="homotopy", search="local")
    # The default fallback keeps every homotopy success and adds the direct method's.  (The
    # direct re-solve runs on a different batch; on this chaotic network the rounding of batched
    # matrix products decides a few problems differently, hence the 90%.)
    assert np.all(both.success >= h.success)
    assert both.success.sum() >= 0.9 * (h.success | d.success).sum()
    assert both.success.sum() > max(h.success.sum(), d.success.sum())


def test_prelu_network_flip_points():
    """ReLU networks (Algorithms F2-F3).  Known limitation: at the kinks of a ReLU network the
    SQP can stall a little off the boundary; the feasibility restoration removes most of those
    violations, and what remains (local minima of the violation, where SLSQP sometimes finds
    another way) is reported as a failure.  The default (homotopy, then direct for every problem,
    the closer answer kept) finds at least as many as either alone."""
    model = fliplib.prelu_network([4, 12, 12, 3], alpha=0.0, seed=3)
    x = np.random.default_rng(3).normal(size=(10, 4))
    res = fliplib.closest_flip_points(model, x, 'all', search="local", options=dict(fallback=None))
    direct = fliplib.closest_flip_points(model, x, "all", search="local", method="direct")
    both = fliplib.closest_flip_points(model, x, "all", search="local")
    done = res.status != -1
    assert res.success[done].mean() >= 0.6
    assert both.success[done].sum() >= max(res.success[done].sum(), direct.success[done].sum())
    assert np.all(both.success >= res.success)
    # On PReLU networks the default fallback is "closer": every problem solved directly as well
    # (more work than "failed"), and never farther than the homotopy alone.
    np.testing.assert_allclose(both.distance, fliplib.closest_flip_points(model, x, 'all', search="local", options=dict(fallback='closer')).distance)
    failed = fliplib.closest_flip_points(model, x, 'all', search="local", options=dict(fallback='failed'))
    assert both.n_jacobian_evals.sum() > failed.n_jacobian_evals.sum()
    shared = both.success & res.success
    assert np.all(both.distance[shared] <= res.distance[shared] * (1.0 + 1e-12))
    check_evidence(res, model)
    check_evidence(both, model)


def three_class_linear_network():
    """Logits (0, x_0, x_0 + x_1) of a 2-feature input (a PReLU net with slope 1)."""
    w2 = tf.constant(np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]))
    return NetworkParams(weights=(tf.constant(np.eye(2)), w2), biases=(tf.zeros(2, tf.float64), tf.zeros(3, tf.float64)),
                         activation="prelu", scales=(1.0,))


def test_an_active_third_class_enters_the_optimality_test():
    # Logits (0, x_0, x_0 + x_1), source 0, target 1, from x = (-1, -2): the projection onto
    # x_0 = 0 is (0, -2), where class 2 is below by 2.  From x = (-1, 0.5) the projection (0, 0.5)
    # would let class 2 win (0.5 > 0), so the closest flip point is (0, -margin): the inequality of
    # class 2 binds, and the point is optimal only with its multiplier (status 0).
    params = three_class_linear_network()
    margin = 1e-3
    x = np.array([[-1.0, -2.0], [-1.0, 0.5]])
    res = fliplib.closest_flip_points(params, x, 1, source=0, options=dict(margin=margin))
    np.testing.assert_allclose(res.x, [[0.0, -2.0], [0.0, -margin]], atol=1e-9)
    assert np.all(res.status == 0)
    assert res.min_margin[1] == pytest.approx(margin, rel=1e-6) and res.optimality[1] < 1e-6
    # Without the third class's row, the residual of the same point is large.
    ev = fliplib.flip_evidence(params, x[1:], res.x[1:], [0], [1], margin=margin, active_tol=-1.0)
    assert ev["optimality"][0] > 0.1


@pytest.mark.parametrize("sizes, n", [([6, 20, 20, 20, 4], 15), ([10, 32, 32, 32, 32, 5], 10)])
def test_relu_problems_that_slsqp_solves_are_solved(sizes, n):
    # ReLU networks where the SQP from x stalls in local minima of the violation on many
    # problems: the watchdog's full steps (deeper network, default options: 35% without them,
    # 70% with them, SLSQP 55%) and the walk along the boundary must bring fliplib at least to
    # SLSQP's success.
    model = fliplib.prelu_network(sizes, alpha=0.0, seed=3)
    x = np.random.default_rng(3).normal(size=(n, sizes[0]))
    plain = fliplib.closest_flip_points(model, x, 'all', search="local", options=dict(fallback=None))
    res = fliplib.closest_flip_points(model, x, "all")
    done = np.argwhere(res.status != -1)
    slsqp_ok = []
    for i, j in done:
        point = slsqp_flip_point(model, x[i], int(res.source[i, j]), int(j))["x"]
        ev = fliplib.flip_evidence(model, x[i:i + 1], point[None], res.source[i, j:j + 1], np.array([j]))
        slsqp_ok.append(flip.status_from_evidence(ev)[0] <= 1)
    ours = res.success[done[:, 0], done[:, 1]]
    assert ours.sum() >= np.sum(slsqp_ok)
    assert ours.sum() > plain.success[done[:, 0], done[:, 1]].sum()
    check_evidence(res, model)


def test_failure_is_reported_not_hidden():
    # A fixed mask that freezes every feature: no flip point can be reached.
    model, x = random_problems([3, 8, 2], 1.0, 3, 0)
    res = fliplib.closest_flip_points(model, x, "all", fixed=np.ones(3, dtype=bool))
    done = res.status != -1
    assert not np.any(res.success[done])
    assert np.all(res.status[done] == 2)
    assert all("logit gap" in m for m in res.message[done])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": np.zeros((2, 4))}, ValueError, "shape"),
        ({"x": np.array([[np.nan, 0.0, 0.0]])}, ValueError, "NaN"),
        ({"x": np.array([[np.inf, 0.0, 0.0]])}, ValueError, "NaN or inf"),
        ({"x": np.array([["a", "b", "c"]])}, TypeError, "real numbers"),
        ({"target": 7}, ValueError, "target classes"),
        ({"target": -1}, ValueError, "target classes"),
        ({"target": 0.5}, TypeError, "integer"),
        ({"target": "others"}, ValueError, "'all' or 'any'"),
        ({"upper": 0.1}, ValueError, "outside its bounds"),
        ({"lower": 1.0, "upper": 0.0}, ValueError, "lower exceeds upper"),
        ({"source": 5}, ValueError, "source classes"),
        ({"fixed": np.ones(3)}, TypeError, "boolean"),
        ({"feature_weights": [1.0, -1.0, 1.0]}, ValueError, "positive"),
        ({"method": "newton"}, ValueError, "method"),
        ({"eta": 0}, ValueError, "eta"),
        ({"x": np.zeros((0, 3))}, ValueError, "no inputs"),
        ({"target": None}, TypeError, "integer class indices"),
        ({"target": ["a"]}, TypeError, "integer class indices"),
        ({"target": np.zeros((1, 0), dtype=int)}, ValueError, "r >= 1"),
        ({"source": 1.7}, TypeError, "whole numbers"),
        ({"source": np.nan}, TypeError, "whole numbers"),
        ({"source": [0, 1]}, ValueError, r"shape \(1,\)"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
        ({"batch_size": -1}, ValueError, "batch_size must be a positive integer"),
        ({"max_iter": 2.5}, ValueError, "max_iter must be a positive integer"),
        ({"inner_iter": True}, ValueError, "inner_iter must be a positive integer"),
        ({"gap_tol": np.nan}, ValueError, "gap_tol must be a positive finite number"),
        ({"xtol": -1e-4}, ValueError, "xtol must be a positive finite number"),
        ({"margin": np.inf}, ValueError, "margin must be a positive finite number"),
        ({"opt_tol": 0.0}, ValueError, "opt_tol must be a positive number"),
        ({"margin": 0.0}, ValueError, "margin must be a positive finite number"),
        ({"margin": -1.0}, ValueError, "margin must be a positive finite number"),
        ({"fallback": "bogus"}, ValueError, "fallback must be"),
        ({"restarts": -1}, ValueError, "restarts must be a non-negative integer"),
        ({"restarts": 1.5}, ValueError, "restarts must be a non-negative integer"),
        ({"adaptive": "no"}, TypeError, "adaptive must be True or False"),
        ({"n_rows": 0}, ValueError, "n_rows must be a positive integer"),
        ({"restarts": 1, "seed": -3}, ValueError, "seed must be a non-negative integer"),
        ({"lower": "a"}, TypeError, "lower"),
        ({"x": [[0.1, 0.2, 0.3], [0.1]]}, ValueError, "x"),
        ({"x": np.full((1, 3), 1e300)}, ValueError, "overflow"),
        ({"search": "everywhere"}, ValueError, "search must be 'global' or 'local'"),
        ({"options": {"maxiter": 3}}, TypeError, "unknown options"),
        ({"target": "some"}, ValueError, "'any'"),
    ],
)
def test_bad_input_raises_precise_errors(kwargs, error, match):
    model = fliplib.erf_network([3, 6, 3], seed=0)
    args = {"x": np.full((1, 3), 0.5), "target": 1, "source": 0}
    args.update(kwargs)
    x = args.pop("x")
    target = args.pop("target")
    options = {key: args.pop(key) for key in list(args) if key in OPTION_NAMES}
    if options:
        args["options"] = options
    with pytest.raises(error, match=match):
        fliplib.closest_flip_points(model, x, target, **args)


#: The fields of FlipOptions, which closest_flip_points takes in ``options``.
OPTION_NAMES = {field.name for field in dataclasses.fields(fliplib.FlipOptions)}


def test_status_codes_at_the_edges_of_each_condition():
    # tol = gap_tol * max(1, |z_i|) = 2e-6 here; each row sits just inside or just outside one
    # condition, all others met; the first failing condition in the order 5, 2, 3, 4 names the status.
    tol, eps = 2e-6, 1e-3
    rows = [  # gap, margin, violation, optimality, finite -> status
        (tol * (1 - eps), tol * (1 + eps), 0.0, 1e-3 * (1 - eps), True, 0),
        (tol * (1 - eps), tol * (1 + eps), 0.0, 1e-3 * (1 + eps), True, 1),
        (tol * (1 + eps), tol * (1 + eps), 0.0, 0.0, True, 2),
        (np.nan, tol * (1 + eps), 0.0, 0.0, True, 2),
        (tol * (1 - eps), tol * (1 - eps), 0.0, 0.0, True, 3),
        (tol * (1 - eps), tol * (1 + eps), 1e-300, 0.0, True, 4),
        (tol * (1 + eps), tol * (1 - eps), 1.0, 0.0, True, 2),
        (0.0, 1.0, 0.0, 0.0, False, 5),
    ]
    gap, margin, violation, optimality, finite, expected = map(np.array, zip(*rows))
    ev = {"logit_gap": gap, "z_source": np.full(len(rows), 2.0), "min_margin": margin,
          "bound_violation": violation, "optimality": optimality, "finite": finite.astype(bool)}
    np.testing.assert_array_equal(flip.status_from_evidence(ev, gap_tol=1e-6, opt_tol=1e-3), expected)


def test_flip_evidence_checks_its_classes_and_candidates():
    model = fliplib.erf_network([3, 6, 3], seed=0)
    x = np.random.default_rng(0).normal(size=(4, 3))
    source = fliplib.predict_proba(model, x).argmax(axis=1)
    target = (source + 1) % 3
    with pytest.raises(ValueError, match="i == j"):  # x itself would pass as its own "flip point"
        fliplib.flip_evidence(model, x, x, source, source)
    with pytest.raises(ValueError, match="target classes"):
        fliplib.flip_evidence(model, x, x, source, np.full(4, -1))
    with pytest.raises(TypeError, match="whole numbers"):
        fliplib.flip_evidence(model, x, x, source, np.full(4, 1.7))
    with pytest.raises(ValueError, match="x_hat must have the shape of x"):
        fliplib.flip_evidence(model, x, x[:, :2], source, target)
    with pytest.raises(ValueError, match="evidence lacks"):
        flip.status_from_evidence({"logit_gap": np.zeros(4)})
    # A non-finite candidate is judged (status 5), not an error.
    x_hat = x.copy()
    x_hat[2, 1] = np.nan
    ev = fliplib.flip_evidence(model, x, x_hat, source, target)
    assert flip.status_from_evidence(ev)[2] == 5 and not ev["finite"][2] and np.isnan(ev["optimality"][2])
    assert np.all(ev["finite"][[0, 1, 3]]) and np.all(np.isfinite(ev["optimality"][[0, 1, 3]]))


def test_source_equal_to_target_is_an_error():
    model = fliplib.erf_network([3, 6, 3], seed=0)
    with pytest.raises(ValueError, match="i == j"):
        fliplib.closest_flip_points(model, np.zeros((1, 3)), 2, source=2)


def test_not_an_erf_network_is_an_error():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="Dense layer with a built-in activation"):
        fliplib.closest_flip_points(model, np.zeros((1, 3)), 1)


def test_bounds_forgive_rounding_only():
    """An input on a bound up to rounding (a transform that lands on sqrt(8)) is accepted and moved
    onto the bound; one that is really outside is rejected with the feature named."""
    model = fliplib.erf_network([3, 5, 2], seed=0)
    upper = np.sqrt(8.0)
    x = np.array([[0.5, 0.2, np.nextafter(upper, 10.0)]])
    res = fliplib.closest_flip_points(model, x, "all", lower=0.0, upper=upper)
    assert np.all(res.x[~np.isnan(res.x)] <= upper)
    with pytest.raises(ValueError, match="outside its bounds at feature 2"):
        fliplib.closest_flip_points(model, x + [[0, 0, 1e-6]], "all", lower=0.0, upper=upper)


def test_target_any_is_as_close_as_all_for_fewer_jacobian_evaluations():
    # "any" asks for the closest flip point over all other classes as one search per input: on
    # at least 99% of the inputs it is as close as the closest of "all", for a third of the work.
    net = fliplib.erf_network([6, 24, 24, 24, 6], sigma=1.0, seed=4)
    x = np.random.default_rng(4).normal(size=(24, 6))
    every = fliplib.closest_flip_points(net, x, "all")
    nearest = every.closest()
    # Some inputs' closest class is not the one a linearisation at x puts first: the screen
    # (a short solve towards every class) must rank the classes, not the linearisation.
    linearised = nearest_linearised_class(network_params(net), x, nearest.source, np.ones(6), k=1)[:, 0]
    assert np.any(linearised != nearest.target)
    anyc = fliplib.closest_flip_points(net, x, "any")
    check_evidence(anyc, net)
    assert anyc.x.shape == x.shape and anyc.target.shape == (24,)
    assert np.all(anyc.target != anyc.source)
    # "The same" within 1e-5: two polishings of one local minimum agree to about that (the
    # linearised constraints come from float32 Jacobian rows).
    as_close = anyc.success & (anyc.distance <= nearest.distance * (1 + 1e-5))
    assert as_close.mean() >= 0.99
    assert every.n_jacobian_evals.sum() >= 3 * anyc.n_jacobian_evals.sum()
    # The screen alone picks the class: with one class solved and no global stage, "any" is
    # still as close as "all", on the inputs the linearisation misranks too.
    screened = fliplib.closest_flip_points(net, x, "any", search="local", options=dict(any_classes=1))
    assert np.all(screened.success & (screened.distance <= nearest.distance * (1 + 1e-5)))


def test_polishing_ends_feasible_answers_at_status_0():
    # With the paper's gap tolerance, F can stop a hair inside the boundary at a point that is
    # feasible but not first-order optimal (status 1); F from it reaches the optimal point next
    # to it, a few parts per million farther.  That point must replace the answer: before it
    # did, 5 of these 40 answers ended at status 1.
    net = fliplib.erf_network([20, 60, 60, 60, 10], sigma=0.5, seed=3)
    x = np.random.default_rng(3).normal(size=(40, 20))
    res = fliplib.closest_flip_points(net, x, "any", options=dict(gap_tol=1e-4))
    check_evidence(res, net, gap_tol=1e-4)
    assert np.all(res.status == 0)
    # With opt_tol = inf every flip point counts as optimal, so nothing is polished: the answers
    # are the closest points found, and the polished ones are at most KEEP_LAST farther.
    unpolished = fliplib.closest_flip_points(net, x, "any", options=dict(gap_tol=1e-4, opt_tol=np.inf))
    assert np.all(unpolished.success)
    assert np.all(res.distance <= unpolished.distance * (1 + flip.sqp.KEEP_LAST))
    assert np.any(res.distance > unpolished.distance * (1 + 1e-7))  # some were replaced


def test_ten_classes_in_five_dimensions_end_at_first_order_optimal_points():
    # Issue 19's example: ten classes meet in five dimensions, so F's QP linearises more
    # classes than there are features.  Its dual was then left unsolved after F's budget, F
    # had no descent direction of its merit, and (0, 2), (0, 5) and (1, 8) ended at status 1;
    # SLSQP from fliplib's (1, 8) point was 1.6% closer.  Now every answer is at status 0 and
    # SLSQP from it gains nothing.
    net = fliplib.erf_network([5, 10, 10], sigma=0.5, seed=3)
    x = np.random.default_rng(8).normal(size=(3, 5))
    res = fliplib.closest_flip_points(net, x, "all")
    check_evidence(res, net)
    done = res.status != -1
    assert np.all(res.status[done] == 0), np.argwhere(res.status > 0)
    for i, j in [(0, 2), (0, 5), (1, 8)]:
        ref = slsqp_flip_point(net, x[i], int(res.source[i, j]), j, x_start=res.x[i, j])
        z = numpy_logits(net, ref["x"])[0]
        assert abs(z[res.source[i, j]] - z[j]) <= 1e-6 * max(1.0, abs(z[res.source[i, j]])), (i, j)
        assert res.distance[i, j] <= ref["distance"] * (1 + 1e-3), (i, j)


def test_a_failed_problem_has_an_infinite_distance():
    # A pinned input cannot move: no flip point, and its distance must not read as 0.
    net = fliplib.erf_network([3, 8, 3], seed=0)
    x = np.array([[0.2, -0.1, 0.4]])
    res = fliplib.closest_flip_points(net, x, "all", fixed=np.ones(3, bool))
    done = res.status != -1
    assert not res.success[done].any()
    assert np.all(np.isinf(res.distance))
    assert np.all(np.isfinite(res.x[done]))  # the failed attempt is still there to look at


def test_global_search_records_what_it_searched():
    net = fliplib.erf_network([4, 16, 16, 3], sigma=0.5, seed=7)
    x = np.random.default_rng(7).normal(size=(6, 4))
    glob = fliplib.closest_flip_points(net, x, "all")
    local = fliplib.closest_flip_points(net, x, "all", search="local")
    done = glob.status != -1
    # Never farther than the local answer, never a lost flip point; the ball held the answer.
    assert np.all(glob.success[done] >= local.success[done])
    ok = local.success & done
    assert np.all(glob.distance[ok] <= local.distance[ok] * (1 + 1e-9))
    assert np.all(glob.search_radius[glob.success] >= glob.distance[glob.success] * (1 - 1e-9))
    assert np.all(glob.n_starts[done] > local.n_starts[done])
    assert np.all(local.search_radius == 0)
