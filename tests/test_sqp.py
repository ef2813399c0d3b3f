"""The inner solver F: the dual QP against an independent solver, and F's stopping rules."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import fliplib
from fliplib import sqp


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), n_rows=st.integers(1, 3), boxed=st.booleans())
def test_dual_qp_agrees_with_scipy(seed, n_rows, boxed):
    # min 1/2 ||p - x0||_w^2  s.t.  a_0 p = b_0,  a_k p >= b_k,  lo <= p <= hi, solved by SLSQP.
    rng = np.random.default_rng(seed)
    d = 5
    A = rng.normal(size=(1, n_rows, d))
    x0 = rng.normal(size=(1, d))
    b = A[0] @ x0[0] + rng.normal(size=n_rows) * 0.5
    w = rng.uniform(0.5, 2.0, size=(1, d))
    lo, hi = (x0 - 3.0, x0 + 3.0) if boxed else (np.full((1, d), -np.inf), np.full((1, d), np.inf))
    is_eq = tf.constant([True] + [False] * (n_rows - 1))
    p, _ = sqp.dual_qp(tf.constant(A), tf.constant(b[None]), tf.constant(x0), tf.constant(lo), tf.constant(hi),
                       tf.constant(w), is_eq, 50)
    cons = [{"type": "eq", "fun": lambda v: A[0, 0] @ v - b[0]}]
    cons += [{"type": "ineq", "fun": (lambda v, k=k: A[0, k] @ v - b[k])} for k in range(1, n_rows)]
    ref = minimize(lambda v: 0.5 * np.sum(w[0] * (v - x0[0]) ** 2), x0[0], jac=lambda v: w[0] * (v - x0[0]),
                   constraints=cons, bounds=list(zip(lo[0], hi[0])), method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})
    if not ref.success:
        return  # an infeasible QP (the box cuts the equality off): nothing to compare
    np.testing.assert_allclose(p.numpy()[0], ref.x, atol=1e-6 * (1 + np.abs(ref.x).max()))


@pytest.mark.parametrize("boxed", [False, True])
@pytest.mark.parametrize("d", [2, 3, 5])
def test_dual_qp_with_more_rows_than_features_meets_kkt_within_the_solvers_budget(d, boxed):
    # Ten classes and two to five free features: nine rows, so the dual Hessian A W^-1 A^T is
    # singular and the dual is linear along its null space.  F gives the QP DUAL_ITER
    # iterations.  The QP is convex, so its KKT conditions decide: p = clip(x0 + W^-1 A^T lam)
    # (stationarity, box multipliers included) and lam_in >= 0 hold by construction; what must
    # be reached is feasibility and complementarity.  Before the projected Newton step was
    # searched along its projection arc, 14% to 60% of these QPs were left unsolved; now a few
    # in 10,000 need more iterations than F gives them.
    rng = np.random.default_rng(d + 10 * boxed)
    n, n_rows = 2000, 9
    A = rng.normal(size=(n, n_rows, d))
    x0 = rng.normal(size=(n, d))
    feasible = x0 + rng.normal(size=(n, d))  # on the equality, inside the inequalities
    b = np.einsum("nrd,nd->nr", A, feasible) - np.c_[np.zeros(n), rng.uniform(0.0, 1.0, (n, n_rows - 1))]
    w = rng.uniform(0.5, 2.0, size=(n, d))
    if boxed:
        lo, hi = np.minimum(x0, feasible) - 0.5, np.maximum(x0, feasible) + 0.5
    else:
        lo, hi = np.full((n, d), -np.inf), np.full((n, d), np.inf)
    is_eq = tf.constant([True] + [False] * (n_rows - 1))
    p, lam = sqp.dual_qp(*(tf.constant(v) for v in (A, b, x0, lo, hi, w)), is_eq, sqp.DUAL_ITER)
    p, lam = p.numpy(), lam.numpy()
    slack = np.einsum("nrd,nd->nr", A, p) - b
    tol = 1e-7 * (1.0 + np.abs(b).max(axis=1))
    kkt = ((np.abs(slack[:, 0]) <= tol) & (slack[:, 1:].min(axis=1) >= -tol)
           & (np.max(np.abs(lam[:, 1:] * slack[:, 1:]), axis=1) <= tol * (1.0 + np.abs(lam).max(axis=1))))
    assert np.all(lam[:, 1:] >= 0.0)
    np.testing.assert_allclose(p, np.clip(x0 + np.einsum("nr,nrd->nd", lam, A) / w, lo, hi), rtol=1e-12, atol=1e-12)
    assert kkt.mean() >= 0.995, f"KKT met by {kkt.sum()} of {n}"


def test_dual_qp_answers_do_not_depend_on_the_batch(monkeypatch):
    # The dual iterates only the problems whose multipliers still move, and searches the
    # backtracking steps only of those whose full Newton step fails (gathered and scattered
    # back).  A QP solved alone or among 300 others, with rows scaled by 1e-3 to 1e3 so that some
    # need the whole budget and some the backtracking, gets the same multipliers, bit for bit.
    rng = np.random.default_rng(5)
    n, n_rows, d = 300, 9, 3
    A = rng.normal(size=(n, n_rows, d)) * rng.choice([1.0, 1e-3, 1e3], size=(n, 1, 1))
    x0 = rng.normal(size=(n, d))
    b = np.einsum("nrd,nd->nr", A, x0 + rng.normal(size=(n, d))) - np.c_[np.zeros(n), rng.uniform(0, 1, (n, n_rows - 1))]
    w = rng.uniform(0.5, 2.0, size=(n, d))
    lo, hi = x0 - 2.0, x0 + 2.0
    is_eq = tf.constant([True] + [False] * (n_rows - 1))
    args = (A, b, x0, lo, hi, w)
    _, lam_batch = sqp.dual_qp(*(tf.constant(v) for v in args), is_eq, sqp.DUAL_ITER)
    for k in range(0, n, 30):
        _, lam_alone = sqp.dual_qp(*(tf.constant(v[k:k + 1]) for v in args), is_eq, sqp.DUAL_ITER)
        np.testing.assert_array_equal(lam_alone.numpy()[0], lam_batch.numpy()[k])
    # The backtracking trials one block at a time (TRIAL_FLOATS = 1) or all in one: the same.
    monkeypatch.setattr(sqp, "TRIAL_FLOATS", 1)
    _, lam_blocks = sqp.dual_qp(*(tf.constant(v) for v in args), is_eq, sqp.DUAL_ITER)
    np.testing.assert_array_equal(lam_blocks.numpy(), lam_batch.numpy())


def test_constraint_values_of_known_logits():
    z = tf.constant([[3.0, 1.0, 2.5, -1.0]], tf.float64)
    c, gap, violation, min_other, zi = sqp.constraint_values(z, tf.constant([0]), tf.constant([1]), 1.0)
    np.testing.assert_allclose(c.numpy(), [[0.0, 2.0, 0.5, 4.0]])
    assert gap.numpy()[0] == 2.0
    assert violation.numpy()[0] == pytest.approx(2.0 + 0.5)  # |c_j| + max(0, margin - c_2)
    assert min_other.numpy()[0] == 0.5 and zi.numpy()[0] == 3.0


def test_solve_final_reaches_a_flip_point_and_counts_its_work():
    net = fliplib.erf_network([3, 8, 8, 3], seed=1)
    params = fliplib.network_params(net)
    x0 = np.random.default_rng(0).normal(size=(6, 3))
    z = fliplib.predict_proba(net, x0)
    src = np.argmax(z, axis=1)
    tgt = (src + 1) % 3
    inf = np.full_like(x0, np.inf)
    problems = sqp.Problems(x0, -inf, inf, np.ones_like(x0), src, tgt)
    step = sqp.sqp_step("erf", 3, 2, len(params.weights))
    final = sqp.solve_final(params, step, problems, sqp.initial_state(problems, 3), margin=1e-3, gap_tol=1e-6,
                            xtol=1e-4, max_iter=200, watchdog=False)
    ev = fliplib.flip_evidence(net, x0, final.x, src, tgt)
    ok = fliplib.status_from_evidence(ev) <= 1
    assert np.array_equal(ok, final.feasible)
    assert ok.sum() >= 5
    assert np.all(final.n_jac[ok] >= 1) and np.all(final.n_jac <= 200)
