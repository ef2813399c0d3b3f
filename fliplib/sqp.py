"""The inner solver F of Algorithm 2: a batched SQP for eqs. 1-5 on one network per problem.

At the iterate ``x_c`` the constraints ``c_k = z_i - z_k`` of the target and of the
``n_rows - 1`` most threatening other classes are linearised, and the quadratic program

    min 1/2 beta ||p - x||_w^2   s.t.   c(x_c) + A (p - x_c) = 0 (target) / >= margin (others),
                                        lower <= p <= upper

is solved exactly through its dual (:func:`dual_qp`).  The step ``p - x_c``, cut to a trust
radius, is taken with a backtracking line search on the ``l1`` merit function
``1/2 ||x - x0||_w^2 + mu * violation`` (after a second-order correction; Nocedal & Wright,
secs. 18.3-18.5).  ``beta`` is a secant estimate of the Lagrangian's curvature.  Every problem
of the batch carries its own network (per-sample widths and output bias, a stage of the
homotopy), so one TensorFlow call advances thousands of problems.

The papers use an off-the-shelf solver for F (MATLAB's ``fmincon``; App. D); this SQP is
fliplib's own.  On ReLU networks a watchdog (Chamberlain et al. 1982; Nocedal & Wright,
sec. 15.6) takes a few full steps when the final stage stalls: the kinks make the merit reject
every useful step near a non-feasible local minimum.

Precision: constraint values, merit and iterates are float64; only the Jacobian rows are
computed in float32, rescaled layer by layer (:func:`fliplib.jacobian.vjp_float32`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from .jacobian import vjp_float32
from .params import NetworkParams, forward

__all__ = [
    "Problems",
    "SQPState",
    "StageNetwork",
    "FinalStage",
    "initial_state",
    "new_stage",
    "sqp_step",
    "solve_stage",
    "solve_final",
    "constraint_values",
    "dual_qp",
]

# --- Named constants, each with the reason for its value -------------------------------------
#: Curvature estimate beta is clipped to [1, 4]: a secant estimate may shorten the plain
#: projection step (beta = 1) up to four times, never lengthen it.  (A floor of 1/4 let the
#: step overshoot where the boundary curves away from x, and the line search then cut it to
#: a crawl: on chapter 3's trained MNIST network, 18% of the flip points ended with status 1
#: against 5%, in twice the iterations.)
BETA_RANGE = (1.0, 4.0)
#: A rejected step multiplies beta by four (up to 1e6): the next step is shorter, so a rejected
#: iteration is never repeated identically.
BETA_REJECT, BETA_MAX = 4.0, 1e6
#: Armijo constant of the line search on the merit function (the usual 1e-4).
ARMIJO = 1e-4
#: Projected-Newton iterations of the dual QP.  With more features than rows the multipliers
#: converge in a handful; with more rows than features (nine rows, 2 to 12 features), 12
#: iterations leave 1% of random such QPs unsolved and 30 leave 0.03%.  Only the problems whose
#: multipliers still move take a step, and the loop ends once none does.
DUAL_ITER = 30
#: Ridge of the dual QP's Newton system, relative to its trace.  With more rows than free
#: features (ten classes and five inputs, or a box that pins most features) the dual Hessian
#: is singular, and along its null space the dual is linear: the step must go as far as the
#: projection ``lam_in >= 0`` lets it.  The ridge bounds that step at ``1/RIDGE`` times the
#: gradient, and :data:`NEWTON_TRIALS` halvings bring it back to the scale of the multipliers.
RIDGE = 1e-8
#: Halvings of the projected Newton step, then :data:`SAFE_TRIALS` of the safe step.  Six
#: halvings of a step scaled by 1e12 left such QPs to the safe step, a gradient ascent: after
#: twelve iterations the multipliers of a QP of issue 19's example (ten classes, five inputs)
#: were a third of their value, and F, without a descent direction of its merit, stalled at a
#: point that was not optimal.  Where the full Newton step fails, the other trials are
#: evaluated together, in blocks of :data:`TRIAL_FLOATS` (one at a time, they made chapter 2's
#: sharp copy, gradients up to 1e9, twice as slow per SQP iteration).
NEWTON_TRIALS, SAFE_TRIALS = 30, 6
#: Floats of one block of those trials (problems x trials x features; 64 MB): the trials of
#: up to this many floats are evaluated in one pass, the rest in further passes.
TRIAL_FLOATS = 2**23
#: Halvings of the line search before a step is rejected.
LINE_SEARCH = 12
#: A final stage whose logit gap has not fallen by 10% in this many iterations has stalled.
PATIENCE = 100
#: Progress of the gap that counts as such: a 10% reduction.
PROGRESS = 0.9
#: An intermediate stage ends once feasible and its step is below this share of the distance:
#: its flip point only starts the next stage, so it need not be polished.
SETTLED = 0.1
#: A feasible last iterate is the answer unless an earlier flip point was closer by more than this
#: share of the distance.  Near a solution the iterates meet the boundary from either side within
#: the gap tolerance, and one on the near side can be closer by a hair yet far from first-order
#: optimal: preferring it left 20% of chapter 3's target="any" answers at status 1, against none.
KEEP_LAST = 1e-3
#: The watchdog on ReLU networks: after WATCH - FULL_STEPS stalled iterations, FULL_STEPS full steps.
WATCH, FULL_STEPS = 20, 3


class Problems(NamedTuple):
    """One flip-point problem per row (eqs. 1-5): the input, its box, weights and classes."""

    x0: np.ndarray  # (n, d) the inputs x
    lo: np.ndarray  # (n, d) lower bounds (fixed features: lo = hi = x)
    hi: np.ndarray  # (n, d) upper bounds
    w: np.ndarray  # (n, d) feature weights of the distance
    src: np.ndarray  # (n,) class i
    tgt: np.ndarray  # (n,) class j

    def take(self, idx) -> "Problems":
        """The problems ``idx``."""
        return Problems(*(a[idx] for a in self))


class SQPState(NamedTuple):
    """The iteration's memory, one row per problem (float64 tensors or arrays)."""

    x: np.ndarray  # (n, d) the iterate
    mu: np.ndarray  # (n,) penalty parameter of the l1 merit
    x_prev: np.ndarray  # (n, d) the previous iterate (secant pair)
    g_prev: np.ndarray  # (n, d) gradient of lambda^T c at x_prev
    m_prev: np.ndarray  # (n, n_classes) multipliers as logit seeds, lambda^T (e_i - e_k)
    beta: np.ndarray  # (n,) curvature of the quadratic model
    radius: np.ndarray  # (n,) trust radius (w-norm)


def initial_state(problems: Problems, n_classes: int, x_start=None) -> SQPState:
    """The state at ``x_start`` (default ``x0``), with the trust radius of :func:`trust_radius0`."""
    x = problems.x0.copy() if x_start is None else np.array(x_start, dtype=np.float64)
    n = len(x)
    return SQPState(x=x, mu=np.ones(n), x_prev=x.copy(), g_prev=np.zeros_like(x), m_prev=np.zeros((n, n_classes)),
                    beta=np.ones(n), radius=trust_radius0(problems))


def trust_radius0(problems: Problems) -> np.ndarray:
    """Initial trust radius: the scale of the input itself, and at least that of a unit box."""
    w, x0 = problems.w, problems.x0
    return np.maximum(np.sqrt(np.sum(w * x0**2, axis=1)), np.sqrt(np.sum(w, axis=1)))


def new_stage(state: SQPState, idx, *, reset_radius: bool, radius0=None) -> SQPState:
    """The network changes with the homotopy stage: restart the secant estimate of ``idx``
    (and, on a ReLU network, the trust radius: a short step at a kink says nothing of the next)."""
    x_prev, g_prev, m_prev, beta, radius = (np.array(a) for a in (state.x_prev, state.g_prev, state.m_prev,
                                                                    state.beta, state.radius))
    beta[idx], m_prev[idx], g_prev[idx], x_prev[idx] = 1.0, 0.0, 0.0, state.x[idx]
    if reset_radius:
        radius[idx] = radius0[idx]
    return state._replace(x_prev=x_prev, g_prev=g_prev, m_prev=m_prev, beta=beta, radius=radius)


# --- The constraints and the QP --------------------------------------------------------------


def constraint_values(logits, src, tgt, margin):
    """``c_k = z_i - z_k`` (eqs. 3-4) and the ``l1`` violation of ``c_j = 0``, ``c_k >= margin``.

    Returns ``c``, the gap ``|c_j|``, the violation, ``min_{k != i, j} c_k`` and ``|z_i|``."""
    n_classes = logits.shape[1]
    zi = tf.gather(logits, src, axis=1, batch_dims=1)
    c = zi[:, None] - logits
    is_tgt = tf.one_hot(tgt, n_classes, dtype=tf.float64)
    ineq = 1.0 - tf.one_hot(src, n_classes, dtype=tf.float64) - is_tgt
    gap = tf.abs(tf.reduce_sum(c * is_tgt, axis=1))
    shortfall = tf.reduce_sum(ineq * tf.nn.relu(margin - c), axis=1)
    min_other = tf.reduce_min(tf.where(ineq > 0, c, tf.constant(math.inf, tf.float64)), axis=1)
    return c, gap, gap + shortfall, min_other, tf.abs(zi)


def dual_qp(A, b, x0, lo, hi, w, is_eq, n_iter: int):
    """Solve ``min 1/2 ||p - x0||_w^2  s.t.  A_eq p = b_eq,  A_in p >= b_in,  lo <= p <= hi``.

    Projected Newton ascent on the concave dual
    ``theta(lam) = min_{lo<=p<=hi} 1/2 ||p - x0||_w^2 - lam^T (A p - b)`` with ``lam_in >= 0``,
    whose minimiser is ``p(lam) = clip(x0 + W^{-1} A^T lam, lo, hi)`` and whose gradient is
    ``b - A p(lam)``.  Returns ``p`` and ``lam``.
    """
    ineq = tf.logical_not(is_eq)[None, :]

    def iterate(k, lam, moving):
        # Only the problems whose multipliers still move take a step: a frozen problem's answer
        # does not depend on the rest of the batch, and it costs nothing.
        idx = tf.where(moving)
        A_m, b_m, x0_m, lo_m, hi_m, w_m, lam_m = (tf.gather_nd(t, idx) for t in (A, b, x0, lo, hi, w, lam))
        new_m = _dual_ascent(A_m, b_m, x0_m, lo_m, hi_m, w_m, ineq, lam_m)
        still = tf.reduce_any(tf.abs(new_m - lam_m) > 1e-12 * (1.0 + tf.abs(lam_m)), axis=1)
        return (k + 1, tf.tensor_scatter_nd_update(lam, idx, tf.where(still[:, None], new_m, lam_m)),
                tf.tensor_scatter_nd_update(moving, idx, still))

    # A graph loop, not an unrolled one: the compiled SQP step stays small.  It ends once no
    # problem's multipliers move.
    _, lam, _ = tf.while_loop(lambda k, _, moving: (k < n_iter) & tf.reduce_any(moving), iterate,
                              (tf.constant(0), tf.zeros_like(b), tf.ones_like(b[:, 0], dtype=tf.bool)))
    return _primal(A, x0, lo, hi, w, lam[:, None])[1][:, 0], lam


def _primal(A, x0, lo, hi, w, lam):
    """``q = x0 + W^{-1} A^T lam`` and ``p(lam) = clip(q, lo, hi)`` for ``t`` multiplier vectors
    per problem (``lam``: (n, t, rows); returns two (n, t, d) tensors)."""
    q = x0[:, None] + tf.einsum("ntr,nrd->ntd", lam, A) / w[:, None]
    return q, tf.clip_by_value(q, lo[:, None], hi[:, None])


def _dual_value(A, b, x0, lo, hi, w, lam):
    """The dual ``theta(lam)`` of :func:`dual_qp` at ``t`` multiplier vectors per problem: (n, t)."""
    _, p = _primal(A, x0, lo, hi, w, lam)
    return 0.5 * tf.reduce_sum(w[:, None] * tf.square(p - x0[:, None]), axis=2) - tf.reduce_sum(
        lam * (tf.einsum("nrd,ntd->ntr", A, p) - b[:, None]), axis=2)


def _dual_ascent(A, b, x0, lo, hi, w, ineq, lam):
    """One projected Newton step of :func:`dual_qp`, with backtracking and a safe fallback step."""
    n_rows = A.shape[1]
    eye = tf.eye(n_rows, dtype=tf.float64)[None]
    q, p = (t[:, 0] for t in _primal(A, x0, lo, hi, w, lam[:, None]))
    free = tf.cast((q > lo) & (q < hi), tf.float64)
    grad = b - tf.einsum("nrd,nd->nr", A, p)
    hess = tf.einsum("nrd,nsd->nrs", A * (free / w)[:, None, :], A)
    binding = ineq & (lam <= 0.0) & (grad < 0.0)
    keep = tf.cast(tf.logical_not(binding), tf.float64)
    keep2 = keep[:, :, None] * keep[:, None, :]
    # A tiny ridge keeps the solve defined where gradients vanish (an all-zero row of A).
    reg = RIDGE * tf.linalg.trace(hess)[:, None, None] + 1e-200
    reduced = keep2 * hess + (1.0 - keep2) * eye + reg * eye
    newton = tf.linalg.solve(reduced, (keep * grad)[:, :, None])[:, :, 0]
    # The safe step: a diagonal bound on the dual's curvature for every free set (Gershgorin
    # on A W^{-1} A^T), so that the projected step ascends where the projected Newton step
    # does not (at a kink of the dual, or where an inequality multiplier hits zero).
    bound = tf.reduce_sum(tf.abs(tf.einsum("nrd,nsd->nrs", A / w[:, None, :], A)), axis=2)
    safe = keep * grad / (bound + reg[:, :, 0] + 1e-300)
    base = _dual_value(A, b, x0, lo, hi, w, lam[:, None])[:, 0]

    def first_ascent(idx, steps):
        """Of the trial steps (m, t, rows) of problems ``idx`` (every problem if None), taken
        along the projection arc ``lam(alpha) = P[lam + alpha step]`` (Bertsekas 1982), the first
        that passes the Armijo test on the projected displacement; ``lam`` where none does."""
        def pick(t):
            return t if idx is None else tf.gather(t, idx)

        lam_i, grad_i, base_i = pick(lam), pick(grad), pick(base)
        trial = lam_i[:, None] + steps
        trial = tf.where(ineq[:, None], tf.maximum(trial, 0.0), trial)
        slope = tf.maximum(tf.reduce_sum(grad_i[:, None] * (trial - lam_i[:, None]), axis=2), 0.0)
        value = _dual_value(pick(A), pick(b), pick(x0), pick(lo), pick(hi), pick(w), trial)
        ok = value >= base_i[:, None] + 1e-4 * slope - 1e-12 * tf.abs(base_i[:, None])
        first = tf.argmax(tf.cast(ok, tf.int32), axis=1)  # the first passing trial (0 if none)
        found = tf.reduce_any(ok, axis=1)
        return tf.where(found[:, None], tf.gather(trial, first, axis=1, batch_dims=1), lam_i), found

    # The full Newton step for every problem; where it fails, the other trials in order: the
    # Newton step halved up to NEWTON_TRIALS - 1 times, then the safe step halved up to
    # SAFE_TRIALS - 1 times.  The first that passes is the step sequential backtracking takes;
    # the trials are searched in blocks as large as TRIAL_FLOATS allows, usually all in one.
    new_lam, found = first_ascent(None, newton[:, None])
    n_trials = NEWTON_TRIALS - 1 + SAFE_TRIALS
    alphas = tf.concat([0.5 ** tf.range(1, NEWTON_TRIALS, dtype=tf.float64),
                        0.5 ** tf.range(SAFE_TRIALS, dtype=tf.float64)], axis=0)
    use_newton = tf.range(n_trials) < NEWTON_TRIALS - 1
    searching = tf.reduce_sum(tf.cast(tf.logical_not(found), tf.int64)) * tf.shape(A, out_type=tf.int64)[2]
    block = tf.cast(tf.clip_by_value(TRIAL_FLOATS // tf.maximum(searching, 1), 1, n_trials), tf.int32)

    def search(start, new_lam, found):
        rows = tf.cast(tf.where(tf.logical_not(found))[:, 0], tf.int32)
        trials = tf.range(start, tf.minimum(start + block, n_trials))
        direction = tf.where(tf.gather(use_newton, trials)[None, :, None], tf.gather(newton, rows)[:, None],
                             tf.gather(safe, rows)[:, None])
        taken, ok = first_ascent(rows, tf.gather(alphas, trials)[None, :, None] * direction)
        return (start + block, tf.tensor_scatter_nd_update(new_lam, rows[:, None], taken),
                tf.tensor_scatter_nd_update(found, rows[:, None], ok))

    _, new_lam, _ = tf.while_loop(
        lambda start, _, found: (start < n_trials) & tf.logical_not(tf.reduce_all(found)), search,
        (tf.constant(0), new_lam, found))
    return tf.where(tf.math.is_finite(new_lam), new_lam, lam)


# --- One SQP iteration, compiled -------------------------------------------------------------


class _Model(NamedTuple):
    """The local model of one iteration: the QP step and what the merit needs of it."""

    d: tf.Tensor  # the step, cut to the trust radius
    shrink: tf.Tensor  # the factor it was cut by
    A: tf.Tensor  # Jacobian rows of the linearised constraints
    beta: tf.Tensor
    mu: tf.Tensor  # the penalty parameter for this step
    phi0: tf.Tensor  # merit at x
    slope: tf.Tensor  # its directional derivative along d
    g_new: tf.Tensor
    m_new: tf.Tensor


def _linearise(params, fwd, x, state, src, tgt, n_classes, n_rows):
    """Jacobian rows of the target and the ``n_rows - 1`` closest other classes (eqs. 11-12),
    the gradient of ``m_prev^T z`` at ``x``, and which class each row belongs to."""
    c = tf.gather(fwd.logits, src, axis=1, batch_dims=1)[:, None] - fwd.logits
    if n_rows > 1:
        ineq = 1.0 - tf.one_hot(src, n_classes, dtype=tf.float64) - tf.one_hot(tgt, n_classes, dtype=tf.float64)
        threat = tf.where(ineq > 0, c, tf.constant(math.inf, tf.float64))
        _, others = tf.math.top_k(-threat, k=n_rows - 1)
        rows = tf.concat([tgt[:, None], tf.cast(others, tgt.dtype)], axis=1)
    else:
        rows = tgt[:, None]
    seeds = tf.one_hot(src, n_classes, dtype=tf.float64)[:, None, :] - tf.one_hot(rows, n_classes, dtype=tf.float64)
    if n_rows == n_classes - 1:
        # Every other class is a row, so m_prev = sum_k lam_k (e_i - e_k) with lam_k = -m_prev_k,
        # and the gradient of m_prev^T z is the same combination of the rows: no extra seed.
        A = vjp_float32(params, fwd, seeds)
        g_here = -tf.einsum("nr,nrd->nd", tf.gather(state.m_prev, rows, axis=1, batch_dims=1), A)
    else:
        grads = vjp_float32(params, fwd, tf.concat([seeds, state.m_prev[:, None, :]], axis=1))
        A, g_here = grads[:, :n_rows], grads[:, n_rows]
    return A, g_here, rows, seeds, tf.gather(c, rows, axis=1, batch_dims=1)


def _qp_model(problems, state, A, g_here, seeds, c_rows, violation, margin, n_rows) -> _Model:
    """The QP step, the penalty that makes it a descent direction of the merit, and the merit."""
    x, x0, lo, hi, w = state.x, problems.x0, problems.lo, problems.hi, problems.w
    is_eq = tf.constant([True] + [False] * (n_rows - 1))
    margin_rows = tf.constant([0.0] + [1.0] * (n_rows - 1), tf.float64)
    # Secant curvature of the Lagrangian along s = x - x_prev.
    s = x - state.x_prev
    ss = tf.reduce_sum(w * s * s, axis=1)
    sy = ss - tf.reduce_sum(s * (g_here - state.g_prev), axis=1)
    beta = tf.where(ss > 1e-28, tf.clip_by_value(sy / tf.maximum(ss, 1e-300), *BETA_RANGE), state.beta)
    b = tf.einsum("nrd,nd->nr", A, x) - c_rows + margin * margin_rows
    p, lam_scaled = dual_qp(A, b, x - (x - x0) / beta[:, None], lo, hi, w, is_eq, DUAL_ITER)
    lam = beta[:, None] * lam_scaled
    # Trust region: the step is at most `radius` long (w-norm), so that a linearisation with
    # vanishing gradients cannot throw the iterate far into a saturated region.
    d_norm = tf.sqrt(tf.reduce_sum(w * tf.square(p - x), axis=1))
    shrink = tf.minimum(state.radius / tf.maximum(d_norm, 1e-300), 1.0)
    d = (p - x) * shrink[:, None]
    # Linearised constraints at p: how much of the violation the step is predicted to remove.
    # The QP can be infeasible (a box or vanishing gradients), so predict, do not assume.
    lin = tf.einsum("nrd,nd->nr", A, p) - b + margin * margin_rows  # c_rows + A (p - x)
    eq_row = 1.0 - margin_rows
    viol_rows = tf.reduce_sum(eq_row * tf.abs(c_rows) + margin_rows * tf.nn.relu(margin - c_rows), axis=1)
    viol_lin = tf.reduce_sum(eq_row * tf.abs(lin) + margin_rows * tf.nn.relu(margin - lin), axis=1)
    predicted = shrink * (viol_rows - viol_lin)  # the l1 model is linear along a shortened step
    solved = viol_lin <= 1e-8 * (1.0 + viol_rows)
    # The penalty follows the multipliers (Powell's rule: above twice the largest, and decaying
    # towards it, so that one huge multiplier from a nearly flat start does not freeze the
    # iteration), and only where the QP was solved (elsewhere the multipliers diverge).
    lam_max = 2.0 * tf.reduce_max(tf.abs(lam), axis=1) + 1e-8
    mu = tf.where(solved, tf.maximum(lam_max, 0.5 * (state.mu + lam_max)), state.mu)
    # Where the step reduces the linearised violation, the penalty is at least what makes it a
    # descent direction of the merit, curvature included (Nocedal & Wright, eq. 18.36, rho = 1/2).
    objective_slope = tf.reduce_sum(w * (x - x0) * d, axis=1)
    curvature = 0.5 * tf.reduce_sum(w * tf.square(d), axis=1)
    needed = 2.0 * tf.maximum(objective_slope + curvature, 0.0) / tf.maximum(predicted, 1e-300)
    mu = tf.where(predicted > 0.0, tf.maximum(mu, needed + 1e-8), mu)
    phi0 = 0.5 * tf.reduce_sum(w * tf.square(x - x0), axis=1) + mu * violation
    slope = tf.minimum(objective_slope - mu * predicted, 0.0)
    return _Model(d=d, shrink=shrink, A=A, beta=beta, mu=mu, phi0=phi0, slope=slope,
                  g_new=tf.einsum("nr,nrd->nd", lam, A), m_new=tf.einsum("nr,nrc->nc", lam, seeds))


def _merit_at(params, scales, bias, problems, mu, margin, n_classes):
    """``merit(trial, idx)``: the l1 merit of problems ``idx`` at their ``trial`` points, and the
    constraint values there (one forward pass over those problems only), scattered back."""

    def merit(trial, idx):
        def sub(t):
            return tf.gather(t, idx)

        logits = forward(params, trial, scales=[sub(s) for s in scales], output_bias=sub(bias)).logits
        c_t, g_t, v_t, o_t, z_t = constraint_values(logits, sub(problems.src), sub(problems.tgt), margin)
        phi = 0.5 * tf.reduce_sum(sub(problems.w) * tf.square(trial - sub(problems.x0)), axis=1) + sub(mu) * v_t
        at = idx[:, None]
        whole = tf.shape(problems.x0, out_type=tf.int64)[:1]
        per_class = tf.concat([whole, tf.constant([n_classes], tf.int64)], axis=0)
        return (tf.tensor_scatter_nd_update(tf.fill(whole, tf.constant(math.inf, tf.float64)), at, phi),
                tf.scatter_nd(at, c_t, per_class), tf.scatter_nd(at, g_t, whole),
                tf.scatter_nd(at, o_t, whole), tf.scatter_nd(at, z_t, whole))

    return merit


def _line_search(merit, problems, x, model: _Model, current, take_full):
    """The full step, its second-order correction, then backtracking (Nocedal & Wright, 18.3)."""
    lo, hi, w, tgt = problems.lo, problems.hi, problems.w, problems.tgt
    d, phi0, slope = model.d, model.phi0, model.slope
    # Where the full step fails on curvature of the boundary (the Maratos effect), one more
    # projection of the full step onto the target's linearised equality, with the Jacobian at x.
    full = tf.clip_by_value(x + d, lo, hi)
    everyone = tf.range(tf.shape(x, out_type=tf.int64)[0])
    phi_full, c_full, gap_full, other_full, zi_full = merit(full, everyone)
    # The watchdog (`take_full`) takes the full step whatever the merit says.
    ok_full = (phi_full <= phi0 + ARMIJO * slope) | (take_full & tf.math.is_finite(phi_full))
    c_full = tf.gather(c_full, tgt, axis=1, batch_dims=1)  # z_i - z_j at the full step
    a0 = model.A[:, 0] * tf.cast(hi > lo, tf.float64) / w
    corr = -(c_full / tf.maximum(tf.reduce_sum(a0 * model.A[:, 0], axis=1), 1e-300))[:, None] * a0
    soc = tf.clip_by_value(full + corr, lo, hi)
    retry = tf.where(tf.logical_not(ok_full))[:, 0]
    phi_soc, _, gap_soc, other_soc, zi_soc = merit(tf.gather(soc, retry), retry)
    ok_soc = (tf.logical_not(ok_full) & (phi_soc <= phi0 + ARMIJO * slope)
              & tf.reduce_all(tf.math.is_finite(soc), axis=1))

    def pick(a, b, c):
        cond_a, cond_b = (ok_full, ok_soc) if a.shape.rank == 1 else (ok_full[:, None], ok_soc[:, None])
        return tf.where(cond_a, a, tf.where(cond_b, b, c))

    def trial_step(k, alpha, accepted, x_new, gap_new, other_new, zi_new):
        trial = tf.clip_by_value(x + alpha[:, None] * d, lo, hi)
        retry = tf.where(tf.logical_not(accepted))[:, 0]
        phi, _, g_t, o_t, z_t = merit(tf.gather(trial, retry), retry)
        ok = (phi <= phi0 + ARMIJO * alpha * slope) & tf.logical_not(accepted)
        x_new = tf.where(ok[:, None], trial, x_new)
        gap_new, other_new, zi_new = (tf.where(ok, a, b) for a, b in ((g_t, gap_new), (o_t, other_new), (z_t, zi_new)))
        accepted = accepted | ok
        return k + 1, tf.where(accepted, alpha, 0.5 * alpha), accepted, x_new, gap_new, other_new, zi_new

    first = ok_full | ok_soc
    gap, min_other, zi = current
    init = (tf.constant(1), tf.fill(tf.shape(phi0), tf.constant(0.5, tf.float64)), first, pick(full, soc, x),
            pick(gap_full, gap_soc, gap), pick(other_full, other_soc, min_other), pick(zi_full, zi_soc, zi))
    _, alpha, accepted, x_new, gap_new, other_new, zi_new = tf.while_loop(
        lambda k, alpha, accepted, *_: (k < LINE_SEARCH) & tf.logical_not(tf.reduce_all(accepted)), trial_step, init)
    return x_new, (gap_new, other_new, zi_new), alpha, accepted, first


def sqp_step(activation: str, n_classes: int, n_rows: int, n_layers: int):
    """One SQP iteration for a batch, compiled once per network kind (see the module docstring).

    The weights are arguments, not constants, and every dimension but the number of layers is
    left open in the signature, so networks of the same kind and any batch size share one
    compiled function (compiling costs seconds; a flip-point call should not).

    The returned function maps ``(weights, biases, scales, output_bias, problems, state, margin,
    take_full)`` to the new state and ``(gap, min_other, |z_i|, step_norm, accepted)``.
    Problems flagged ``take_full`` take the full step without the line search (the watchdog).
    """
    key = (activation, n_classes, n_rows, n_layers)
    if key in _COMPILED_STEPS:
        return _COMPILED_STEPS[key]
    matrix, vector = tf.TensorSpec([None, None], tf.float64), tf.TensorSpec([None], tf.float64)
    classes, per_class = tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, n_classes], tf.float64)
    signature = [
        (matrix,) * (n_layers - 1) + (per_class,), (vector,) * (n_layers - 1) + (tf.TensorSpec([n_classes], tf.float64),),
        (matrix,) * (n_layers - 1), per_class,
        Problems(matrix, matrix, matrix, matrix, classes, classes),
        SQPState(matrix, vector, matrix, matrix, per_class, vector, vector),
        tf.TensorSpec([], tf.float64), tf.TensorSpec([None], tf.bool),
    ]

    @tf.function(input_signature=signature)
    def step(weights, biases, scales, bias, problems, state, margin, take_full):
        params = NetworkParams(weights=weights, biases=biases, activation=activation, scales=())
        x = state.x
        fwd = forward(params, x, scales=scales, output_bias=bias)
        _, gap, violation, min_other, zi = constraint_values(fwd.logits, problems.src, problems.tgt, margin)
        A, g_here, _, seeds, c_rows = _linearise(params, fwd, x, state, problems.src, problems.tgt, n_classes, n_rows)
        model = _qp_model(problems, state, A, g_here, seeds, c_rows, violation, margin, n_rows)
        merit = _merit_at(params, scales, bias, problems, model.mu, margin, n_classes)
        x_new, (gap_new, other_new, zi_new), alpha, accepted, first = _line_search(
            merit, problems, x, model, (gap, min_other, zi), take_full)
        step_norm = tf.sqrt(tf.reduce_sum(problems.w * tf.square(model.d), axis=1))
        radius = _next_radius(activation, state.radius, model.shrink, first, accepted, alpha * step_norm, step_norm)
        # A rejected step leaves x unchanged; more curvature next time shortens the step.
        beta = tf.where(accepted, model.beta, tf.minimum(BETA_REJECT * tf.maximum(model.beta, 1.0), BETA_MAX))
        new = SQPState(x=x_new, mu=model.mu, x_prev=x, g_prev=model.g_new, m_prev=model.m_new, beta=beta, radius=radius)
        return new, (gap_new, other_new, zi_new, step_norm, accepted)

    _COMPILED_STEPS[key] = step
    return step


def _next_radius(activation, radius, shrink, first, accepted, taken, step_norm):
    """The radius doubles after a full step that it cut short and halves after a rejection; on a
    ReLU network it also becomes the length taken after a shortened step (the linearisation held
    no further: the next kink).  (On erf networks that rule cost flip points on chapter 2's sharp
    networks.)"""
    taken = taken if activation == "prelu" else radius  # erf: smooth, the radius stays
    return tf.where(first & (shrink < 1.0), 2.0 * radius,
                    tf.where(first, radius, tf.where(accepted, taken, 0.5 * tf.minimum(radius, step_norm))))


# Compiled SQP steps by network kind: a cache of code, not of results.
_COMPILED_STEPS: dict = {}


# --- F: iterate the compiled step on a batch ------------------------------------------------


class StageNetwork(NamedTuple):
    """The network of each problem at its homotopy stage: per-sample widths (or slopes) of the
    hidden layers and the output bias (:func:`fliplib.homotopy.interpolate`)."""

    scales: tuple
    output_bias: tf.Tensor

    def take(self, idx) -> "StageNetwork":
        return StageNetwork(tuple(tf.gather(s, idx) for s in self.scales), tf.gather(self.output_bias, idx))


def _iterate(params, step_fn, problems, state, net, idx, margin, take_full):
    """One compiled step for the problems ``idx``; returns their new state (NumPy) and
    ``(gap, min_other, |z_i|, step_norm, accepted)``."""
    sub = problems.take(idx)
    new, info = step_fn(tuple(params.weights), tuple(params.biases), net.scales, net.output_bias,
                        Problems(*(tf.constant(a) for a in sub)),
                        SQPState(*(tf.constant(np.asarray(a)[idx]) for a in state)),
                        tf.constant(margin, tf.float64), tf.constant(take_full))
    return SQPState(*(v.numpy() for v in new)), [v.numpy() for v in info]


def _put(state: SQPState, idx, new: SQPState, radius0) -> SQPState:
    """Write ``new`` into rows ``idx``; the radius may shrink without limit but never grows past
    the scale of the input."""
    arrays = [np.array(a) for a in state]
    for a, v in zip(arrays, new):
        a[idx] = v
    arrays[-1][idx] = np.clip(new.radius, 1e-12 * radius0[idx], radius0[idx])
    return SQPState(*arrays)


def solve_stage(params, step_fn, problems, state, net, *, margin, path_tol, inner_iter):
    """F on an intermediate network of the path (Algorithm 2, line 6, ``k < eta``).

    Iterates until the stage's flip point is found (relative gap below ``path_tol``, the other
    classes below ``z_i``) and the step is below :data:`SETTLED` times the distance, or for
    ``inner_iter`` iterations.  Returns the state, whether each flip point was found, and the
    Jacobian evaluations.
    """
    n = len(problems.x0)
    radius0 = trust_radius0(problems)
    found, done, n_jac = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int64)
    for _ in range(inner_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        new, (gap, min_other, zi, step_norm, _) = _iterate(params, step_fn, problems, state, net.take(act), act,
                                                          margin, np.zeros(act.size, bool))
        state = _put(state, act, new, radius0)
        n_jac[act] += 1
        dist = np.sqrt(np.sum(problems.w[act] * (new.x - problems.x0[act]) ** 2, axis=1))
        found[act] = (gap <= path_tol * np.maximum(1.0, zi)) & (min_other > 0)
        done[act] = found[act] & (step_norm <= SETTLED * np.maximum(dist, 1e-12))
    return state, found, n_jac


class FinalStage(NamedTuple):
    """What F on the original network leaves for the rescue paths."""

    x: np.ndarray  # the answer: the last iterate, or the closest flip point seen
    n_jac: np.ndarray  # Jacobian evaluations
    feasible: np.ndarray  # a flip point was seen (last iterate or earlier)
    x_least: np.ndarray  # the last iterate that cut the logit gap by 10%
    progressed: np.ndarray  # whether any iterate did


def solve_final(params, step_fn, problems, state, *, margin, gap_tol, xtol, max_iter, watchdog: bool):
    """F on the original network (Algorithm 2, line 6 with ``k = eta``; all of ``"direct"``).

    Stops once feasible (gap below ``gap_tol / 10`` relative) and the step is below ``xtol``
    times the distance, after ``max_iter`` iterations, or after :data:`PATIENCE` iterations
    without progress.  Keeps the closest flip point seen where the last iterate is not one, or is
    farther by more than :data:`KEEP_LAST`: at a kink of a ReLU network the iteration can leave a
    flip point it has found.  With ``watchdog`` (ReLU networks), a
    problem that has found no flip point and stalled takes :data:`FULL_STEPS` full steps.
    """
    n = len(problems.x0)
    net = StageNetwork(tuple(tf.fill((n, int(w.shape[1])), tf.constant(s, tf.float64))
                             for s, w in zip(params.scales, params.weights)),
                       tf.broadcast_to(params.biases[-1], (n, params.n_classes)))
    radius0 = trust_radius0(problems)
    done, last_ok, take_full = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    n_jac, stall = np.zeros(n, np.int64), np.zeros(n, np.int64)
    best_x, best_dist, best_gap = problems.x0.copy(), np.full(n, np.inf), np.full(n, np.inf)
    x_least = problems.x0.copy()
    for it in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        new, (gap, min_other, zi, step_norm, _) = _iterate(params, step_fn, problems, state, net.take(act), act,
                                                          margin, take_full[act])
        state = _put(state, act, new, radius0)
        n_jac[act] += 1
        dist = np.sqrt(np.sum(problems.w[act] * (new.x - problems.x0[act]) ** 2, axis=1))
        tol = np.maximum(1.0, zi)
        feasible = (gap <= 0.1 * gap_tol * tol) & (min_other > gap_tol * tol)
        improved = feasible & (dist < best_dist[act])
        best_x[act[improved]], best_dist[act[improved]] = new.x[improved], dist[improved]
        progress = gap < PROGRESS * best_gap[act]
        best_gap[act[progress]], x_least[act[progress]] = gap[progress], new.x[progress]
        stall[act] = np.where(~progress & ~feasible, stall[act] + 1, np.where(progress, 0, stall[act]))
        if watchdog:  # only until the first flip point: after it, full steps would throw it away
            take_full[act] = ~feasible & ~np.isfinite(best_dist[act]) & (stall[act] % WATCH >= WATCH - FULL_STEPS)
            state.radius[act[take_full[act]]] = radius0[act[take_full[act]]]
        small = step_norm <= xtol * np.maximum(dist, 1e-12)
        done[act[(feasible & small) | (it + 1 >= max_iter) | (stall[act] >= PATIENCE)]] = True
        last_ok[act] = feasible
    # The last iterate, unless it is not a flip point and an earlier one was (or was clearly closer).
    x = state.x.copy()
    dist_last = np.sqrt(np.sum(problems.w * (x - problems.x0) ** 2, axis=1))
    use_best = np.isfinite(best_dist) & (~last_ok | (best_dist < dist_last * (1 - KEEP_LAST)))
    x[use_best] = best_x[use_best]
    return FinalStage(x=x, n_jac=n_jac, feasible=last_ok | use_best, x_least=x_least,
                      progressed=np.isfinite(best_gap))
