"""Closest flip points (eqs. 1-5), batched, by homotopy (Algorithm 2 with Algorithm 1) or directly.

For each input ``x`` with class ``i`` and a target class ``j`` we solve

    min ||x_hat - x||_w   s.t.   z_i(x_hat) = z_j(x_hat),   z_i(x_hat) >= z_k(x_hat) + margin (k != i, j),
                                 lower <= x_hat <= upper,    x_hat_f = x_f for fixed features f,

on the logits ``z``.  The inner solver is a sequential quadratic programming method written for
a batch: at the iterate ``x_c`` it linearises ``c_k = z_i - z_k`` for the target and the most
threatening other classes, solves the quadratic program

    min 1/2 ||p - x||_w^2   s.t.   c(x_c) + A (p - x_c) = 0 (target) / >= margin (others),  lower <= p <= upper

exactly through its dual (``p(lambda) = clip(x + W^{-1} A^T lambda)``, a projected Newton
ascent in the few multipliers), and moves along ``p - x_c`` with a line search on the
``l1`` merit function (on ReLU networks with a watchdog: a stalled problem takes a few full
steps regardless of the merit, which the kinks would otherwise reject).  Every problem of the
batch carries its own homotopy parameter, so one TensorFlow call advances thousands of homotopy
paths.

Precision: the constraint values, the merit function and the returned points are float64; only
the Jacobian rows of the linearisation are computed in float32, rescaled layer by layer
(:func:`fliplib.jacobian.vjp_float32`), which makes them several times cheaper and only the
Newton steps slightly inexact.  The evidence of every answer (:func:`flip_evidence`) is
measured in float64 on the original network.  Where the SQP stalls a little off the boundary (at
a kink of a ReLU network, or where three classes meet), a feasibility restoration (least-norm
steps onto the violated constraints, and bisection on ``z_i - z_j``) removes what is left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from . import homotopy
from ._checks import positive_int, positive_number
from .jacobian import vjp, vjp_float32
from .params import NetworkParams, forward, network_params

__all__ = ["FlipResult", "STATUS_MESSAGES", "closest_flip_points", "flip_evidence", "status_from_evidence"]

#: Status codes of :class:`FlipResult` and what they mean.
STATUS_MESSAGES = {
    -1: "not computed: the target is the source class",
    0: "flip point: feasible and first-order optimal",
    1: "flip point: feasible, but the first-order optimality residual is above tolerance",
    2: "failed: the logit gap |z_i - z_j| is above tolerance",
    3: "failed: another class's logit is not below z_i = z_j",
    4: "failed: a bound or a fixed feature is violated",
    5: "failed: the network output is not finite",
}


@dataclass
class FlipResult:
    """Flip points and their evidence, in the spirit of ``scipy.optimize.OptimizeResult``.

    Every array has one entry per input (shape ``(n,)``), or per input and target class
    (``(n, r)``) when several targets were asked for; ``x`` has a trailing feature axis.

    Attributes
    ----------
    x : ndarray
        The flip points ``x_hat``.
    distance : ndarray
        ``||x_hat - x||_w`` (2-norm, weighted by ``feature_weights`` if given); ``inf`` where
        nothing was computed.
    success : ndarray of bool
        True only when the logit gap is below ``gap_tol * max(1, |z_i|)``, every other logit is
        below ``z_i`` by more than that tolerance, and every bound and fixed feature holds.
    status : ndarray of int
        See :data:`STATUS_MESSAGES`.
    message : ndarray of str
        The status in words.
    source, target : ndarray of int
        Classes ``i`` and ``j``.
    logit_gap : ndarray
        ``|z_i(x_hat) - z_j(x_hat)|`` on the original network.
    min_margin : ndarray
        ``min_k z_i(x_hat) - z_k(x_hat)`` over the other classes (``inf`` with two classes).
    bound_violation : ndarray
        Largest violation of a bound or of a fixed feature (0 when all hold).
    optimality : ndarray
        Relative first-order optimality residual: the part of ``W (x_hat - x)`` outside the
        cone of the active constraint gradients, divided by ``||W (x_hat - x)||``.
    n_jacobian_evals : ndarray of int
        Jacobian evaluations (batched reverse passes) spent on the point.
    n_homotopy_steps : ndarray of int
        Accepted homotopy steps (0 for ``method="direct"``).
    method : str
    """

    x: np.ndarray
    distance: np.ndarray
    success: np.ndarray
    status: np.ndarray
    message: np.ndarray
    source: np.ndarray
    target: np.ndarray
    logit_gap: np.ndarray
    min_margin: np.ndarray
    bound_violation: np.ndarray
    optimality: np.ndarray
    n_jacobian_evals: np.ndarray
    n_homotopy_steps: np.ndarray
    method: str = "homotopy"

    def _per_point_fields(self):
        return [f.name for f in fields(self) if f.name != "method"]

    def closest(self) -> "FlipResult":
        """Per input, the nearest successful flip point over the target axis.

        Inputs with no successful flip point get their first failed attempt (``success=False``).
        """
        if self.distance.ndim == 1:
            return self
        d = np.where(self.success, self.distance, np.inf)
        best = np.argmin(d, axis=1)
        none = ~np.any(self.success, axis=1)
        attempted = self.status != -1
        best = np.where(none, np.argmax(attempted, axis=1), best)
        rows = np.arange(len(best))
        picked = {name: getattr(self, name)[rows, best] for name in self._per_point_fields()}
        return FlipResult(**picked, method=self.method)

    def to_frame(self) -> pd.DataFrame:
        """The evidence as a DataFrame, one row per (input, target) problem."""
        cols = [n for n in self._per_point_fields() if n != "x"]
        data = {n: np.asarray(getattr(self, n)).reshape(-1) for n in cols}
        frame = pd.DataFrame(data)
        if self.distance.ndim == 2:
            frame.insert(0, "input", np.repeat(np.arange(self.distance.shape[0]), self.distance.shape[1]))
        else:
            frame.insert(0, "input", np.arange(len(frame)))
        return frame

    def summary(self) -> pd.Series:
        """Success rate, status counts and distance quartiles of the computed problems."""
        done = self.status != -1
        d = self.distance[done & self.success]
        out = {"problems": int(done.sum()), "success rate": float(self.success[done].mean()) if done.any() else math.nan}
        for code in sorted(set(np.unique(self.status[done]).tolist())):
            out[f"status {code}"] = int(np.sum(self.status[done] == code))
        if d.size:
            out.update({"distance median": float(np.median(d)), "distance max": float(d.max())})
        out["max logit gap (successes)"] = float(self.logit_gap[done & self.success].max()) if d.size else math.nan
        return pd.Series(out)

    def __repr__(self) -> str:
        shape = self.distance.shape
        done = self.status != -1
        rate = self.success[done].mean() if done.any() else math.nan
        return f"FlipResult(method={self.method!r}, problems={shape}, success rate={rate:.4f})"


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_matrix(name: str, value, n: int, d: int, default: float) -> np.ndarray:
    if value is None:
        return np.full((n, d), default)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full((n, d), float(arr))
    elif arr.shape == (d,):
        arr = np.broadcast_to(arr, (n, d)).copy()
    elif arr.shape != (n, d):
        raise ValueError(f"{name} must be a scalar, shape ({d},) or ({n}, {d}); got {arr.shape}")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} holds NaN values")
    return arr


def _check_inputs(params: NetworkParams, x, lower, upper, fixed, feature_weights):
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != params.n_features:
        raise ValueError(f"x must have shape (n, {params.n_features}) for this network, got {np.shape(x)}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"x holds NaN or inf values (first at input {bad[0]}, feature {bad[1]})")
    n, d = x.shape
    lo = _as_matrix("lower", lower, n, d, -np.inf)
    hi = _as_matrix("upper", upper, n, d, np.inf)
    if np.any(lo > hi):
        raise ValueError("lower exceeds upper for some feature")
    # Rounding (a transform that lands on a bound) is forgiven up to 1e-12 relative: such
    # inputs are moved onto the bound; anything farther outside is an error.
    slack = 1e-12 * np.maximum(1.0, np.maximum(np.abs(np.where(np.isfinite(lo), lo, 0.0)), np.abs(np.where(np.isfinite(hi), hi, 0.0))))
    outside = (x < lo - slack) | (x > hi + slack)
    if np.any(outside):
        i, f = np.argwhere(outside)[0]
        raise ValueError(
            f"input {i} lies outside its bounds at feature {f}: {x[i, f]} not in [{lo[i, f]}, {hi[i, f]}] "
            f"({int(outside.any(axis=1).sum())} inputs are outside)"
        )
    x = np.clip(x, lo, hi)
    if fixed is not None:
        mask = np.asarray(fixed)
        if mask.dtype != bool:
            raise TypeError(f"fixed must be a boolean mask, got dtype {mask.dtype}")
        mask = np.broadcast_to(mask, (n, d)) if mask.shape in ((d,), (n, d)) else None
        if mask is None:
            raise ValueError(f"fixed must have shape ({d},) or ({n}, {d}), got {np.shape(fixed)}")
        lo = np.where(mask, x, lo)
        hi = np.where(mask, x, hi)
    w = np.ones(d) if feature_weights is None else np.asarray(feature_weights, dtype=np.float64)
    if w.shape != (d,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"feature_weights must be {d} positive finite numbers")
    return x, lo, hi, w


def _whole_numbers(name: str, value) -> np.ndarray:
    """``value`` as an int64 array, if it holds whole numbers (integers, or floats without fraction)."""
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr) & (np.mod(arr, 1) == 0)):
        raise TypeError(f"{name} must hold integer class indices, got {arr.dtype} values that are not whole numbers")
    return arr


def _check_range(name: str, arr: np.ndarray, n_classes: int) -> np.ndarray:
    bad = (arr < 0) | (arr >= n_classes)
    if np.any(bad):
        raise ValueError(f"{name} classes must lie in [0, {n_classes}), got {np.unique(arr[bad])}")
    return arr.astype(np.int64)


def _class_indices(name: str, value, n: int, n_classes: int) -> np.ndarray:
    """``value`` (a class index, or one per input) as ``n`` checked class indices."""
    arr = _whole_numbers(name, value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a class index or an array of shape ({n},), got shape {arr.shape}")
    return _check_range(name, arr, n_classes)


def _check_distinct(src: np.ndarray, tgt: np.ndarray) -> None:
    same = tgt == src[:, None]
    if np.any(same):
        i = int(np.argwhere(same)[0, 0])
        raise ValueError(
            f"target equals the source class (i == j == {int(src[i])}) for input {i}; a flip point needs "
            "two different classes (use target='all' to skip the source automatically)"
        )


def _check_classes(params: NetworkParams, x: np.ndarray, target, source):
    n, n_classes = len(x), params.n_classes
    if n == 0:
        raise ValueError("x holds no inputs (shape (0, n_features))")
    logits = forward(params, x).logits.numpy()
    if not np.all(np.isfinite(logits)):
        raise ValueError("the network output is not finite at some input")
    src = np.argmax(logits, axis=1) if source is None else _class_indices("source", source, n, n_classes)
    all_targets = isinstance(target, str)
    if all_targets:
        if target != "all":
            raise ValueError(f"target must be a class index, an array of class indices or 'all', got {target!r}")
        tgt = np.broadcast_to(np.arange(n_classes), (n, n_classes))
    else:
        arr = _whole_numbers("target", target)
        if arr.ndim == 0:
            tgt = np.full((n, 1), arr)
        elif arr.shape == (n,):
            tgt = arr[:, None]
        elif arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] > 0:
            tgt = arr
        else:
            raise ValueError(f"target must be a scalar, shape ({n},), shape ({n}, r) with r >= 1 or 'all'; got {arr.shape}")
        tgt = _check_range("target", tgt, n_classes)
        _check_distinct(src, tgt)
    return src, np.asarray(tgt, dtype=np.int64), all_targets or (np.ndim(target) == 2)


# --------------------------------------------------------------------------------------------
# The inner solver: one SQP step for a batch of problems
# --------------------------------------------------------------------------------------------


def _constraint_values(logits, src, tgt, margin):
    """``c_k = z_i - z_k`` and the l1 violation of ``c_j = 0``, ``c_k >= margin``."""
    n_classes = logits.shape[1]
    zi = tf.gather(logits, src, axis=1, batch_dims=1)
    c = zi[:, None] - logits
    is_tgt = tf.one_hot(tgt, n_classes, dtype=tf.float64)
    ineq = 1.0 - tf.one_hot(src, n_classes, dtype=tf.float64) - is_tgt
    gap = tf.abs(tf.reduce_sum(c * is_tgt, axis=1))
    shortfall = tf.reduce_sum(ineq * tf.nn.relu(margin - c), axis=1)
    min_other = tf.reduce_min(tf.where(ineq > 0, c, tf.constant(math.inf, tf.float64)), axis=1)
    return c, gap, gap + shortfall, min_other, tf.abs(zi)


def _dual_qp(A, b, x0, lo, hi, w, is_eq, n_iter: int):
    """Solve ``min 1/2 ||p - x0||_w^2  s.t.  A_eq p = b_eq,  A_in p >= b_in,  lo <= p <= hi``.

    Projected Newton ascent on the concave dual
    ``theta(lam) = min_{lo<=p<=hi} 1/2 ||p - x0||_w^2 - lam^T (A p - b)`` with ``lam_in >= 0``,
    whose minimiser is ``p(lam) = clip(x0 + W^{-1} A^T lam, lo, hi)`` and whose gradient is
    ``b - A p(lam)``.  Returns ``p`` and ``lam``.
    """
    n_rows = A.shape[1]
    eye = tf.eye(n_rows, dtype=tf.float64)[None]
    lam = tf.zeros_like(b)
    ineq = tf.logical_not(is_eq)[None, :]

    def primal(lam_):
        q = x0 + tf.einsum("nr,nrd->nd", lam_, A) / w
        return q, tf.clip_by_value(q, lo, hi)

    def dual_value(lam_):
        _, p_ = primal(lam_)
        return 0.5 * tf.reduce_sum(w * tf.square(p_ - x0), axis=1) - tf.reduce_sum(
            lam_ * (tf.einsum("nrd,nd->nr", A, p_) - b), axis=1
        )

    def ascend(k, lam):
        q, p = primal(lam)
        free = tf.cast((q > lo) & (q < hi), tf.float64)
        grad = b - tf.einsum("nrd,nd->nr", A, p)
        hess = tf.einsum("nrd,nsd->nrs", A * (free / w)[:, None, :], A)
        binding = ineq & (lam <= 0.0) & (grad < 0.0)
        keep = tf.cast(tf.logical_not(binding), tf.float64)
        keep2 = keep[:, :, None] * keep[:, None, :]
        # A tiny ridge keeps the solve defined where gradients vanish (an all-zero row of A).
        reg = 1e-12 * tf.linalg.trace(hess)[:, None, None] + 1e-200
        reduced = keep2 * hess + (1.0 - keep2) * eye + reg * eye
        newton = tf.linalg.solve(reduced, (keep * grad)[:, :, None])[:, :, 0]
        # The safe step: a diagonal bound on the dual's curvature for every free set (Gershgorin
        # on A W^{-1} A^T), so that the projected step ascends where the projected Newton step
        # does not (at a kink of the dual, or where an inequality multiplier hits zero).
        bound = tf.reduce_sum(tf.abs(tf.einsum("nrd,nsd->nrs", A / w[:, None, :], A)), axis=2)
        safe = keep * grad / (bound + reg[:, :, 0] + 1e-300)
        base = dual_value(lam)

        # Backtracking: the Newton step halved up to 5 times, then the safe step likewise; the
        # loop ends as soon as every problem has accepted a step (usually the full Newton step).
        def backtrack(trial_k, new_lam, accepted):
            step = tf.where(trial_k < 6, newton, safe)
            alpha = 0.5 ** tf.cast(trial_k % 6, tf.float64)
            trial = lam + alpha * step
            trial = tf.where(ineq, tf.maximum(trial, 0.0), trial)
            slope = tf.reduce_sum(grad * step, axis=1)
            ok = dual_value(trial) >= base + 1e-4 * alpha * slope - 1e-12 * tf.abs(base)
            take = ok & tf.logical_not(accepted)
            return trial_k + 1, tf.where(take[:, None], trial, new_lam), accepted | ok

        _, new_lam, _ = tf.while_loop(
            lambda trial_k, _, accepted: (trial_k < 12) & tf.logical_not(tf.reduce_all(accepted)),
            backtrack, (tf.constant(0), lam, tf.zeros_like(base, dtype=tf.bool)),
        )
        return k + 1, tf.where(tf.math.is_finite(new_lam), new_lam, lam)

    def iterate(k, lam, _):
        k, new_lam = ascend(k, lam)
        moved = tf.reduce_any(tf.abs(new_lam - lam) > 1e-12 * (1.0 + tf.abs(lam)))
        return k, new_lam, moved

    # A graph loop, not an unrolled one: the compiled SQP step stays small.  It ends early once
    # no multiplier moves any more (the iteration is a function of lam alone: nothing would change).
    _, lam, _ = tf.while_loop(lambda k, _, moved: (k < n_iter) & moved, iterate, (tf.constant(0), lam, tf.constant(True)))
    return primal(lam)[1], lam


def _sqp_step(activation: str, n_classes: int, n_rows: int, n_layers: int, dual_iter: int = 12, line_search: int = 12):
    """One SQP iteration for a batch, compiled once per network kind (see the module docstring).

    The weights are arguments, not constants, and every dimension but the number of layers is
    left open in the signature, so networks of the same kind and any batch size share one
    compiled function (compiling costs seconds; a flip-point call should not).

    The quadratic model of the Lagrangian is ``beta W`` with a scalar ``beta`` per problem, the
    Rayleigh quotient of the Lagrangian's curvature along the last step (a secant estimate
    from the gradients of ``lambda^T c`` at the last two iterates), clipped to ``[1/4, 4]``.
    ``beta = 1`` is the plain projection of ``x`` onto the linearised constraints.

    Problems flagged ``take_full`` take the full step (up to the trust radius) without the line
    search: the watchdog of the driver, see :func:`_solve_batch`.
    """
    key = (activation, n_classes, n_rows, n_layers, dual_iter, line_search)
    if key in _COMPILED_STEPS:
        return _COMPILED_STEPS[key]
    is_eq = tf.constant([True] + [False] * (n_rows - 1))
    row_margin_mask = tf.constant([0.0] + [1.0] * (n_rows - 1), tf.float64)

    matrix = tf.TensorSpec([None, None], tf.float64)
    vector = tf.TensorSpec([None], tf.float64)
    classes = tf.TensorSpec([None], tf.int64)
    per_class = tf.TensorSpec([None, n_classes], tf.float64)
    signature = [
        (matrix,) * (n_layers - 1) + (per_class,), (vector,) * (n_layers - 1) + (tf.TensorSpec([n_classes], tf.float64),),
        matrix, matrix, matrix, matrix, matrix, classes, classes,
        (matrix,) * (n_layers - 1), per_class, vector, tf.TensorSpec([], tf.float64), matrix, matrix, per_class, vector, vector,
        tf.TensorSpec([None], tf.bool),
    ]

    @tf.function(input_signature=signature)
    def step(weights, biases, x, x0, lo, hi, w, src, tgt, scales, bias, mu, margin, x_prev, g_prev, m_prev, beta_prev,
             radius, take_full):
        params = NetworkParams(weights=weights, biases=biases, activation=activation, scales=())

        fwd = forward(params, x, scales=scales, output_bias=bias)
        c, gap, violation, min_other, zi = _constraint_values(fwd.logits, src, tgt, margin)
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
            g_here = -tf.einsum("nr,nrd->nd", tf.gather(m_prev, rows, axis=1, batch_dims=1), A)
        else:
            grads = vjp_float32(params, fwd, tf.concat([seeds, m_prev[:, None, :]], axis=1))
            A, g_here = grads[:, :n_rows], grads[:, n_rows]
        # Secant curvature of the Lagrangian along s = x - x_prev.
        s = x - x_prev
        ss = tf.reduce_sum(w * s * s, axis=1)
        sy = ss - tf.reduce_sum(s * (g_here - g_prev), axis=1)
        beta = tf.where(ss > 1e-28, tf.clip_by_value(sy / tf.maximum(ss, 1e-300), 0.25, 4.0), beta_prev)
        c_rows = tf.gather(c, rows, axis=1, batch_dims=1)
        b = tf.einsum("nrd,nd->nr", A, x) - c_rows + margin * row_margin_mask
        center = x - (x - x0) / beta[:, None]
        p, lam_scaled = _dual_qp(A, b, center, lo, hi, w, is_eq, dual_iter)
        lam = beta[:, None] * lam_scaled
        # Trust region: the step is at most `radius` long (w-norm), so that a linearisation with
        # vanishing gradients cannot throw the iterate far into a saturated region.
        d_norm = tf.sqrt(tf.reduce_sum(w * tf.square(p - x), axis=1))
        shrink = tf.minimum(radius / tf.maximum(d_norm, 1e-300), 1.0)
        d = (p - x) * shrink[:, None]
        m_new = tf.einsum("nr,nrc->nc", lam, seeds)
        g_new = tf.einsum("nr,nrd->nd", lam, A)
        # Linearised constraints at p: how much of the violation the step is predicted to remove.
        # The QP can be infeasible (a box or vanishing gradients), so predict, do not assume.
        lin = tf.einsum("nrd,nd->nr", A, p) - b + margin * row_margin_mask  # c_rows + A (p - x)
        eq_row = 1.0 - row_margin_mask
        viol_rows = tf.reduce_sum(eq_row * tf.abs(c_rows) + row_margin_mask * tf.nn.relu(margin - c_rows), axis=1)
        viol_lin = tf.reduce_sum(eq_row * tf.abs(lin) + row_margin_mask * tf.nn.relu(margin - lin), axis=1)
        predicted = shrink * (viol_rows - viol_lin)  # the l1 model is linear along a shortened step
        solved = viol_lin <= 1e-8 * (1.0 + viol_rows)
        # The penalty follows the multipliers (Powell's rule: above twice the largest, and decaying
        # towards it, so that one huge multiplier from a nearly flat start does not freeze the
        # iteration), and only where the QP was solved (elsewhere the multipliers diverge).
        lam_max = 2.0 * tf.reduce_max(tf.abs(lam), axis=1) + 1e-8
        mu_new = tf.where(solved, tf.maximum(lam_max, 0.5 * (mu + lam_max)), mu)
        # Where the step reduces the linearised violation, the penalty is at least what makes it a
        # descent direction of the merit function, curvature included (Nocedal & Wright, eq. 18.36, rho = 1/2): this
        # drives an infeasible QP's step (a box, or vanishing gradients) towards feasibility.
        objective_slope = tf.reduce_sum(w * (x - x0) * d, axis=1)
        curvature = 0.5 * tf.reduce_sum(w * tf.square(d), axis=1)
        needed = 2.0 * tf.maximum(objective_slope + curvature, 0.0) / tf.maximum(predicted, 1e-300)
        mu_new = tf.where(predicted > 0.0, tf.maximum(mu_new, needed + 1e-8), mu_new)
        phi0 = 0.5 * tf.reduce_sum(w * tf.square(x - x0), axis=1) + mu_new * violation
        slope = tf.minimum(objective_slope - mu_new * predicted, 0.0)

        def merit(trial, idx):
            """The l1 merit of problems ``idx`` at their ``trial`` points, and the constraint values
            there (one forward pass over those problems only), scattered back to the whole batch."""
            def sub(t):
                return tf.gather(t, idx)

            logits = forward(params, trial, scales=[sub(s) for s in scales], output_bias=sub(bias)).logits
            c_t, g_t, v_t, o_t, z_t = _constraint_values(logits, sub(src), sub(tgt), margin)
            phi = 0.5 * tf.reduce_sum(sub(w) * tf.square(trial - sub(x0)), axis=1) + sub(mu_new) * v_t
            at = idx[:, None]
            whole = tf.shape(x, out_type=tf.int64)[:1]
            return (tf.tensor_scatter_nd_update(tf.fill(whole, tf.constant(math.inf, tf.float64)), at, phi),
                    tf.scatter_nd(at, c_t, tf.shape(c, out_type=tf.int64)), tf.scatter_nd(at, g_t, whole),
                    tf.scatter_nd(at, o_t, whole), tf.scatter_nd(at, z_t, whole))

        # The full step, then its second-order correction (Nocedal & Wright, sec. 18.3): where the
        # full step fails on curvature of the boundary (the Maratos effect), one more projection
        # of the full step onto the target's linearised equality, with the Jacobian at x.
        full = tf.clip_by_value(x + d, lo, hi)
        everyone = tf.range(tf.shape(x, out_type=tf.int64)[0])
        phi_full, c_full, gap_full, other_full, zi_full = merit(full, everyone)
        # The watchdog (`take_full`) takes the full step whatever the merit says.
        ok_full = (phi_full <= phi0 + 1e-4 * slope) | (take_full & tf.math.is_finite(phi_full))
        c_full = tf.gather(c_full, tgt, axis=1, batch_dims=1)  # z_i - z_j at the full step
        free = tf.cast(hi > lo, tf.float64)
        a0 = A[:, 0] * free / w
        corr = -(c_full / tf.maximum(tf.reduce_sum(a0 * A[:, 0], axis=1), 1e-300))[:, None] * a0
        soc = tf.clip_by_value(full + corr, lo, hi)
        retry = tf.where(tf.logical_not(ok_full))[:, 0]
        phi_soc, _, gap_soc, other_soc, zi_soc = merit(tf.gather(soc, retry), retry)
        ok_soc = tf.logical_not(ok_full) & (phi_soc <= phi0 + 1e-4 * slope) & tf.reduce_all(tf.math.is_finite(soc), axis=1)

        def pick(a, b, c):
            cond_a = ok_full if a.shape.rank == 1 else ok_full[:, None]
            cond_b = ok_soc if a.shape.rank == 1 else ok_soc[:, None]
            return tf.where(cond_a, a, tf.where(cond_b, b, c))

        def not_done(k, alpha, accepted, *_):
            return (k < line_search) & tf.logical_not(tf.reduce_all(accepted))

        def trial_step(k, alpha, accepted, x_new, gap_new, other_new, zi_new):
            trial = tf.clip_by_value(x + alpha[:, None] * d, lo, hi)
            retry = tf.where(tf.logical_not(accepted))[:, 0]
            phi, _, g_t, o_t, z_t = merit(tf.gather(trial, retry), retry)
            ok = (phi <= phi0 + 1e-4 * alpha * slope) & tf.logical_not(accepted)
            x_new = tf.where(ok[:, None], trial, x_new)
            gap_new = tf.where(ok, g_t, gap_new)
            other_new = tf.where(ok, o_t, other_new)
            zi_new = tf.where(ok, z_t, zi_new)
            accepted = accepted | ok
            alpha = tf.where(accepted, alpha, 0.5 * alpha)
            return k + 1, alpha, accepted, x_new, gap_new, other_new, zi_new

        first = ok_full | ok_soc
        init = (tf.constant(1), tf.fill(tf.shape(phi0), tf.constant(0.5, tf.float64)), first,
                pick(full, soc, x), pick(gap_full, gap_soc, gap), pick(other_full, other_soc, min_other),
                pick(zi_full, zi_soc, zi))
        _, alpha, accepted, x_new, gap_new, other_new, zi_new = tf.while_loop(not_done, trial_step, init)
        step_norm = tf.sqrt(tf.reduce_sum(w * tf.square(d), axis=1))
        # A step the line search rejects leaves x unchanged; more curvature next time shortens the
        # step towards the Gauss-Newton projection onto the linearised constraints (a trust region
        # in effect), so a rejected iteration is never repeated identically.
        beta = tf.where(accepted, beta, tf.minimum(4.0 * tf.maximum(beta, 1.0), 1e6))
        # The radius doubles after a full step that it cut short and halves after a rejection; on a
        # ReLU network it also becomes the length taken after a shortened step (the linearisation
        # held no further: the next kink).  (On erf networks that rule cost flip points on the
        # sharp networks of chapter 2.)
        taken = alpha * step_norm if activation == "prelu" else radius  # erf: smooth, the radius stays
        radius = tf.where(first & (shrink < 1.0), 2.0 * radius,
                          tf.where(first, radius, tf.where(accepted, taken, 0.5 * tf.minimum(radius, step_norm))))
        return x_new, gap_new, other_new, zi_new, step_norm, mu_new, accepted, g_new, m_new, beta, radius

    _COMPILED_STEPS[key] = step
    return step


# Compiled SQP steps by network kind: a cache of code, not of results.
_COMPILED_STEPS: dict = {}


# --------------------------------------------------------------------------------------------
# Evidence, measured on the original network independently of the solver's path
# --------------------------------------------------------------------------------------------


def flip_evidence(model, x, x_hat, source, target, *, lower=None, upper=None, fixed=None,
                  feature_weights=None, margin: float = 1e-3, active_tol: float = 1e-6) -> dict:
    """Measure how well ``x_hat`` solves eqs. 1-5 for ``x`` on the original network.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x, x_hat : ndarray, shape (n, n_features)
    source, target : ndarray of int, shape (n,)
    lower, upper, fixed, feature_weights, margin
        As for :func:`closest_flip_points`.
    active_tol : float
        An inequality counts as active when ``z_i - z_k <= margin + active_tol``; a bound
        when the feature lies within ``active_tol`` (relative) of it.

    Returns
    -------
    dict of ndarray
        ``logit_gap``, ``z_source`` (``|z_i|``), ``min_margin``, ``bound_violation``,
        ``optimality``, ``distance`` and ``finite``.
    """
    params = network_params(model)
    x, lo, hi, w = _check_inputs(params, x, lower, upper, fixed, feature_weights)
    if len(x) == 0:
        raise ValueError("x holds no inputs (shape (0, n_features))")
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x_hat.shape != x.shape and not (np.ndim(x_hat) == 1 and x.shape == (1, x_hat.size)):
        raise ValueError(f"x_hat must have the shape of x, {x.shape}; got {x_hat.shape}")
    x_hat = x_hat.reshape(x.shape)
    src = _class_indices("source", source, len(x), params.n_classes)
    tgt = _class_indices("target", target, len(x), params.n_classes)
    _check_distinct(src, tgt[:, None])
    # A non-finite candidate is judged (status 5, "finite" False), not differentiated: its
    # gradients are taken at x instead and its optimality residual is NaN.
    finite_hat = np.all(np.isfinite(x_hat), axis=1)
    x_eval = np.where(finite_hat[:, None], x_hat, x)
    out = {k: [] for k in ("logit_gap", "z_source", "min_margin", "optimality", "finite")}
    for start in range(0, len(x), 2048):
        sl = slice(start, start + 2048)
        xh = tf.constant(x_eval[sl])
        fwd = forward(params, xh)
        c, gap, _, min_other, zi = _constraint_values(fwd.logits, tf.constant(src[sl]), tf.constant(tgt[sl]), 0.0)
        c = c.numpy()
        n_sl = len(c)
        active = (c <= margin + active_tol) & (np.arange(params.n_classes)[None] != src[sl, None])
        active[np.arange(n_sl), tgt[sl]] = True
        # Gradients grad(z_i - z_k) of the active constraints only (usually just the target's):
        # the k-th slot of a point holds its k-th active class, or a zero row.
        order = np.argsort(~active, axis=1, kind="stable")[:, : active.sum(axis=1).max()]
        slot_active = np.take_along_axis(active, order, axis=1)
        seeds = (np.eye(params.n_classes)[src[sl]][:, None, :] - np.eye(params.n_classes)[order]) * slot_active[:, :, None]
        A = vjp(params, fwd, tf.constant(seeds)).numpy()  # (n, a, d)
        usable = finite_hat[sl] & np.all(np.isfinite(A), axis=(1, 2))
        A = np.where(usable[:, None, None], A, 0.0)
        active = slot_active
        g = w * (x_eval[sl] - x[sl])
        scale = np.maximum(np.abs(x_eval[sl]), 1.0) * active_tol
        at_lo = x_eval[sl] <= lo[sl] + scale
        at_hi = x_eval[sl] >= hi[sl] - scale
        pinned = lo[sl] >= hi[sl]  # fixed features: their multiplier may have either sign
        free = ~(at_lo | at_hi)
        # Least-squares multipliers of the active constraints on the free features, all points at
        # once (an inactive row is zero, so its multiplier is zero in the minimum-norm solution).
        rows = A * active[:, :, None]  # (n, n_classes, d)
        system = np.swapaxes(rows * free[:, None, :], 1, 2)  # (n, d, n_classes)
        eps = np.finfo(np.float64).eps * max(system.shape[1:])
        coef = np.einsum("nkd,nd->nk", np.linalg.pinv(system, rcond=eps), g * free)
        resid = g - np.einsum("nk,nkd->nd", coef, rows)
        resid = (
            np.where(free, resid, 0.0)
            + np.where(at_lo & ~at_hi, np.minimum(resid, 0.0), 0.0)
            + np.where(at_hi & ~at_lo, np.maximum(resid, 0.0), 0.0)
        )
        resid = np.where(pinned, 0.0, resid)
        opt = np.where(usable, np.linalg.norm(resid, axis=1) / np.maximum(np.linalg.norm(g, axis=1), 1e-300), np.nan)
        out["logit_gap"].append(gap.numpy())
        out["z_source"].append(zi.numpy())
        out["min_margin"].append(min_other.numpy())
        out["optimality"].append(opt)
        out["finite"].append(np.all(np.isfinite(fwd.logits.numpy()), axis=1) & finite_hat[sl])
    result = {k: np.concatenate(v) for k, v in out.items()}
    for key in ("logit_gap", "z_source", "min_margin"):
        result[key] = np.where(finite_hat, result[key], np.nan)
    result["bound_violation"] = np.max(np.maximum(np.maximum(lo - x_hat, x_hat - hi), 0.0), axis=1)
    result["distance"] = np.sqrt(np.sum(w * (x_hat - x) ** 2, axis=1))
    return result


def status_from_evidence(evidence: dict, *, gap_tol: float = 1e-6, opt_tol: float = 1e-3) -> np.ndarray:
    """The status code (:data:`STATUS_MESSAGES`) of each flip point from its evidence.

    Parameters
    ----------
    evidence : dict of ndarray
        As returned by :func:`flip_evidence`.
    gap_tol : float
        A flip point needs ``|z_i - z_j| <= gap_tol * max(1, |z_i|)`` and every other logit at
        least that far below ``z_i``.
    opt_tol : float
        Status 0 needs the relative first-order optimality residual below this; above, status 1.

    Returns
    -------
    ndarray of int
        0 or 1 for a flip point; 2-5 name the first condition that fails.
    """
    ev = evidence
    missing = {"logit_gap", "z_source", "min_margin", "bound_violation", "optimality", "finite"} - set(ev)
    if missing:
        raise ValueError(f"evidence lacks {sorted(missing)}: pass the dict returned by flip_evidence")
    tol = gap_tol * np.maximum(1.0, ev["z_source"])
    status = np.where(ev["optimality"] <= opt_tol, 0, 1)
    status = np.where(ev["bound_violation"] > 0, 4, status)
    status = np.where(ev["min_margin"] <= tol, 3, status)
    status = np.where(~(ev["logit_gap"] <= tol), 2, status)
    return np.where(ev["finite"], status, 5)


# --------------------------------------------------------------------------------------------
# The driver: Algorithm 2 (uniform or adaptive steps) around the inner solver
# --------------------------------------------------------------------------------------------


def _solve_batch(params, x0, lo, hi, w, src, tgt, *, method, eta, adaptive, tau, schedule, margin, max_iter,
                 inner_iter, path_tol, gap_tol, xtol, step_fn, x_start=None):
    n = len(x0)
    x0_t = tf.constant(x0)
    src_t, tgt_t = tf.constant(src), tf.constant(tgt)
    if method == "direct":
        start = homotopy.original(params, n)
        t_try = np.ones(n)
    else:
        if params.activation == "erf":
            scales = homotopy.transform_erf(params, x0_t, tau)
        else:
            scales = homotopy.transform_prelu(params, x0_t, tau)
        logits = forward(params, x0_t, scales=scales).logits
        bias = params.biases[-1] + homotopy.flip_bias(logits, src_t, tgt_t, margin)
        start = homotopy.HomotopyStart(scales=scales, output_bias=bias)
        t_try = np.full(n, 1.0 / eta)
    t = np.zeros(n)
    h = t_try.copy()
    x = x0.copy() if x_start is None else x_start.copy()  # a restart begins away from x0
    x_saved = x.copy()
    mu = np.ones(n)
    x_prev = x.copy()
    g_prev = np.zeros_like(x0)
    m_prev = np.zeros((n, params.n_classes))
    beta = np.ones(n)
    # Initial trust radius: the scale of the input itself (and at least that of a unit box).
    radius0 = np.maximum(np.sqrt(np.sum(w * x0**2, axis=1)), np.sqrt(np.sum(w, axis=1)))
    radius = radius0.copy()
    stage_iter = np.zeros(n, dtype=np.int64)
    n_jac = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    best_x = x0.copy()
    best_dist = np.full(n, np.inf)
    last_ok = np.zeros(n, dtype=bool)
    best_gap = np.full(n, np.inf)
    stall = np.zeros(n, dtype=np.int64)
    patience = 100
    # A watchdog after Chamberlain et al. (1982; Nocedal & Wright, sec. 15.6), on ReLU networks:
    # a final stage that has found no flip point and stalled for `watch - n_full` iterations
    # takes `n_full` full steps at the initial trust radius, line search off.  Kinks make the l1
    # merit reject every useful step near a non-feasible local minimum; the full steps jump
    # across them, as SLSQP's line search (which gives up after ten trials and takes the step)
    # does.  Unlike the classic watchdog it does not return to the saved point when the jump
    # does not pay; only the restoration at the end starts from the least violation seen.
    watch, n_full = (20, 3) if params.activation == "prelu" else (0, 0)
    take_full = np.zeros(n, dtype=bool)
    x_least = x0.copy()  # the last final-stage iterate that cut the logit gap by 10%
    h_min = 1.0 / (eta * 2.0**8)
    for _ in range(max_iter + 2 * eta * inner_iter * (1 + 8 * adaptive)):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        sub = homotopy.HomotopyStart(
            scales=[tf.gather(s, act) for s in start.scales], output_bias=tf.gather(start.output_bias, act)
        )
        scales_t, bias_t = homotopy.interpolate(params, sub, t_try[act], schedule=schedule)
        scales_t = tuple(scales_t)
        out = step_fn(
            tuple(params.weights), tuple(params.biases), tf.constant(x[act]), tf.gather(x0_t, act), tf.constant(lo[act]), tf.constant(hi[act]),
            tf.constant(w[act]), tf.gather(src_t, act), tf.gather(tgt_t, act), scales_t, bias_t,
            tf.constant(mu[act]), tf.constant(margin, tf.float64), tf.constant(x_prev[act]),
            tf.constant(g_prev[act]), tf.constant(m_prev[act]), tf.constant(beta[act]), tf.constant(radius[act]),
            tf.constant(take_full[act]),
        )
        x_new, gap, min_other, zi, step_norm, mu_new, accepted, g_new, m_new, beta_new, radius_new = (
            v.numpy() for v in out
        )
        # The radius may shrink without limit but never grows past the scale of the input.
        radius[act] = np.clip(radius_new, 1e-12 * radius0[act], radius0[act])
        x_prev[act] = x[act]
        g_prev[act], m_prev[act], beta[act] = g_new, m_new, beta_new
        x[act] = x_new
        mu[act] = mu_new
        n_jac[act] += 1
        stage_iter[act] += 1
        dist = np.sqrt(np.sum(w[act] * (x_new - x0[act]) ** 2, axis=1))
        small = step_norm <= xtol * np.maximum(dist, 1e-12)
        # An intermediate flip point only starts the next stage, so it need not be polished: a
        # stage ends once its flip point is feasible and the step is below 10% of the distance.
        settled = step_norm <= 0.1 * np.maximum(dist, 1e-12)
        final = t_try[act] >= 1.0
        tol = np.maximum(1.0, zi)
        feasible_path = (gap <= path_tol * tol) & (min_other > 0)
        feasible_tight = (gap <= 0.1 * gap_tol * tol) & (min_other > gap_tol * tol)
        # Final stage (the original network): stop when feasible and the step has vanished.
        # Keep the closest feasible iterate on the original network: at a kink of a ReLU network
        # (or on a rugged boundary) the iteration can leave a flip point it has found and stall.
        improved = final & feasible_tight & (dist < best_dist[act])
        best_x[act[improved]] = x_new[improved]
        best_dist[act[improved]] = dist[improved]
        # A final stage that has not reduced its logit gap by 10% in `patience` iterations has stalled.
        progress = final & (gap < 0.9 * best_gap[act])
        best_gap[act[progress]] = gap[progress]
        x_least[act[progress]] = x_new[progress]
        stall[act] = np.where(final & ~progress & ~feasible_tight, stall[act] + 1, np.where(progress, 0, stall[act]))
        if watch:
            # Only until the first flip point: after it, the kinks of the boundary stall the
            # polishing too, and full steps would throw it away.
            take_full[act] = (final & ~feasible_tight & ~np.isfinite(best_dist[act])
                              & (stall[act] % watch >= watch - n_full))
            radius[act[take_full[act]]] = radius0[act[take_full[act]]]
        finished = final & ((feasible_tight & small) | (stage_iter[act] >= max_iter) | (stall[act] >= patience))
        done[act[finished]] = True
        last_ok[act] = final & feasible_tight
        # Homotopy stages: accept a step once its flip point is found, retreat if it is not.
        stage_over = ~final & ((feasible_path & settled) | (stage_iter[act] >= inner_iter))
        accept = stage_over & (feasible_path | (not adaptive))
        reject = stage_over & ~accept
        a_idx, r_idx = act[accept], act[reject]
        t[a_idx] = t_try[a_idx]
        x_saved[a_idx] = x[a_idx]
        steps[a_idx] += 1
        if adaptive:
            h[a_idx] = np.minimum(2.0 * h[a_idx], 1.0 - t[a_idx])
            h[r_idx] = 0.5 * h[r_idx]
            x[r_idx] = x_saved[r_idx]
            # Too many retreats: give up the path and finish on the original network from the last flip point.
            give_up = r_idx[h[r_idx] < h_min]
            t[give_up] = 1.0
        moved = np.concatenate([a_idx, r_idx])
        # The network changes with the stage: restart the secant curvature estimate.
        beta[moved], m_prev[moved], g_prev[moved], x_prev[moved] = 1.0, 0.0, 0.0, x[moved]
        # ... and, on a ReLU network, the trust radius: a short step at a kink at the end of one
        # stage says nothing of the next.
        if params.activation == "prelu":
            radius[moved] = radius0[moved]
        t_try[moved] = np.where(1.0 - (t[moved] + h[moved]) <= 1e-12, 1.0, np.minimum(1.0, t[moved] + h[moved]))
        stage_iter[moved] = 0
    # The last iterate, unless it is not a flip point and an earlier one was (or was closer).
    dist_last = np.sqrt(np.sum(w * (x - x0) ** 2, axis=1))
    fallback_best = np.isfinite(best_dist) & (~last_ok | (best_dist < dist_last))
    x[fallback_best] = best_x[fallback_best]
    # No flip point found, but the gap is small (a stall at a kink): restore feasibility.
    stuck = np.flatnonzero(~last_ok & ~fallback_best)
    if stuck.size:
        _, violation, scale = _violation(params, x[stuck], src[stuck], tgt[stuck], margin)
        if watch:
            # The watchdog may have jumped away from the least violation: start from whichever of
            # the last iterate and `x_least` violates the constraints less.
            _, v_least, s_least = _violation(params, x_least[stuck], src[stuck], tgt[stuck], margin)
            use = np.isfinite(best_gap[stuck]) & (v_least < violation)
            x[stuck[use]] = x_least[stuck[use]]
            violation, scale = np.where(use, v_least, violation), np.where(use, s_least, scale)
        stuck = stuck[violation <= 0.1 * scale]
    if stuck.size:
        x[stuck], extra = _restore_feasibility(params, x[stuck], lo[stuck], hi[stuck], src[stuck], tgt[stuck],
                                               margin=margin, gap_tol=gap_tol)
        n_jac[stuck] += extra
    return x, n_jac, steps


def _violation(params, points, src, tgt, margin: float):
    """At ``points`` on the original network: ``c = z_i - z`` (every class), the l1 violation
    ``|c_j| + sum_k max(0, margin - c_k)`` of eqs. 3-4, and ``max(1, |z_i|)``."""
    z = forward(params, tf.constant(points)).logits.numpy()
    rows = np.arange(len(points))
    c = z[rows, src][:, None] - z
    others = np.ones_like(c, dtype=bool)
    others[rows, src] = others[rows, tgt] = False
    violation = np.abs(c[rows, tgt]) + np.sum(np.where(others, np.maximum(margin - c, 0.0), 0.0), axis=1)
    return c, violation, np.maximum(1.0, np.abs(z[rows, src]))


def _restore_feasibility(params, x, lo, hi, src, tgt, *, margin: float, gap_tol: float, n_newton: int = 8,
                         n_halvings: int = 60):
    """Remove a small constraint violation left by the SQP (a feasibility restoration phase).

    At a kink of a ReLU network, or where three classes meet, the SQP can stall a little off the
    boundary, alternating between linear pieces.  Each iteration here takes the least-norm step
    onto the linearised violated constraints (``c_j = 0``, and ``c_k = margin`` for each other
    class below the margin), then halves it until the l1 violation decreases.  Where only
    ``c_j`` is violated and the step (or a halved step) changes its sign, bisection on that segment (inside the
    box, which is convex; ``c_j`` is continuous) brings ``|c_j|`` to ``gap_tol max(1, |z_i|) / 10``.
    Nothing else is promised: the caller's evidence judges the point (including its optimality
    residual) like every other answer.

    Returns
    -------
    x : ndarray
        The points, moved where a step reduced the violation.
    evals : ndarray of int
        Jacobian evaluations per point.
    """
    n_classes = params.n_classes
    free = hi > lo
    eye = np.eye(n_classes)
    x = x.copy()
    evals = np.zeros(len(x), dtype=np.int64)
    for _ in range(n_newton):
        c, violation, scale = _violation(params, x, src, tgt, margin)
        rows = np.arange(len(x))
        need = c < margin
        need[rows, src] = need[rows, tgt] = False
        others = need.any(axis=1)
        gap_open = np.abs(c[rows, tgt]) > 0.1 * gap_tol * scale
        # The target row always takes part when anything is violated, so that the step keeps
        # c_j = 0 while it repairs another class.
        need[rows, tgt] = gap_open | others
        act = np.flatnonzero(need.any(axis=1))
        if act.size == 0:
            break
        need_a, c_a = need[act], c[act]
        seeds = (eye[src[act]][:, None, :] - eye[None]) * need_a[:, :, None]  # a zero row where not needed
        A = vjp(params, forward(params, tf.constant(x[act])), tf.constant(seeds)).numpy() * free[act][:, None, :]
        evals[act] += 1
        rhs = np.where(np.arange(n_classes)[None] == tgt[act, None], -c_a, margin - c_a) * need_a
        gram = np.einsum("nkd,nld->nkl", A, A) + np.eye(n_classes)[None] * (~need_a)[:, :, None]
        lam = np.linalg.solve(gram + 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None] * np.eye(n_classes), rhs[..., None])
        step = np.einsum("nk,nkd->nd", lam[..., 0], A)
        alpha = np.ones(act.size)
        moved = np.zeros(act.size, dtype=bool)
        only_gap = gap_open[act] & ~others[act]  # just c_j, the target
        for _ in range(20):
            left = np.flatnonzero(~moved)
            if left.size == 0:
                break
            trial = np.clip(x[act[left]] + alpha[left, None] * step[left], lo[act[left]], hi[act[left]])
            c_t, v_t, _ = _violation(params, trial, src[act[left]], tgt[act[left]], margin)
            t_rows = np.arange(left.size)
            crossed = only_gap[left] & (np.sign(c_t[t_rows, tgt[act[left]]]) != np.sign(c_a[left, tgt[act[left]]]))
            if crossed.any():
                cut = act[left[crossed]]
                x[cut] = _bisect_gap(params, x[cut], trial[crossed], src[cut], tgt[cut], lo[cut], hi[cut], n_halvings)
                moved[left[crossed]] = True
            better = ~crossed & (v_t < violation[act[left]])
            x[act[left[better]]] = trial[better]
            moved[left[better]] = True
            alpha[left] *= 0.5
        if not moved.any():
            break
    return x, evals


def _bisect_gap(params, start, end, src, tgt, lo, hi, n_halvings: int) -> np.ndarray:
    """Bisection for ``c_j = z_i - z_j = 0`` on segments whose ends have opposite signs of ``c_j``.

    Both ends lie in the box ``[lo, hi]``; the result is clipped to it against rounding."""
    rows = np.arange(len(start))

    def gap(t):
        z = forward(params, tf.constant(start + t[:, None] * (end - start))).logits.numpy()
        return z[rows, src] - z[rows, tgt]

    side = np.sign(gap(np.zeros(len(start))))
    lo_t, hi_t = np.zeros(len(start)), np.ones(len(start))
    for _ in range(n_halvings):
        mid = 0.5 * (lo_t + hi_t)
        same = np.sign(gap(mid)) == side
        lo_t, hi_t = np.where(same, mid, lo_t), np.where(same, hi_t, mid)
    return np.clip(start + hi_t[:, None] * (end - start), lo, hi)


def _predict(params, points: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Logits of the original network at ``points`` (..., n_features), in chunks of rows."""
    flat = points.reshape(-1, points.shape[-1])
    z = [forward(params, tf.constant(flat[k:k + chunk])).logits.numpy() for k in range(0, len(flat), chunk)]
    return np.concatenate(z or [np.empty((0, params.n_classes))]).reshape(points.shape[:-1] + (params.n_classes,))


def _first_crossing(params, start, end, src, tgt, *, n_samples: int = 64, n_halvings: int = 60):
    """Where the segment ``start -> end`` first leaves the source class, if it enters the target.

    ``n_samples`` points along each segment locate the first one not classified as ``src``;
    where that one is classified as ``tgt``, bisection on ``argmax z == src`` puts the point on
    the boundary between the two (``z_i = z_j``, every other class below): a feasible point of
    eqs. 2-4.  Where the path crossed a third class first (inside the last sampled interval) or
    never left the source class, or ``start`` is not in it, nothing is found.

    Returns
    -------
    inside : ndarray, shape (n, n_features)
        The boundary point, on the source side (``start`` where nothing was found).
    found : ndarray of bool, shape (n,)
    """
    n = len(start)
    rows = np.arange(n)
    t_grid = np.linspace(0.0, 1.0, n_samples + 1)
    label = np.argmax(_predict(params, start[:, None] + t_grid[None, :, None] * (end - start)[:, None]), axis=2)
    left = label != src[:, None]
    first = np.argmax(left, axis=1)  # 0 where the path never leaves (or start is not in src)
    found = (first > 0) & (label[rows, first] == tgt)
    a = start + t_grid[np.maximum(first - 1, 0)][:, None] * (end - start)
    b = start + t_grid[first][:, None] * (end - start)
    s_lo, s_hi = np.zeros(n), np.ones(n)
    idx = np.flatnonzero(found)
    for _ in range(n_halvings if idx.size else 0):
        mid = 0.5 * (s_lo[idx] + s_hi[idx])
        inside = np.argmax(_predict(params, a[idx] + mid[:, None] * (b[idx] - a[idx])), axis=1) == src[idx]
        s_lo[idx], s_hi[idx] = np.where(inside, mid, s_lo[idx]), np.where(inside, s_hi[idx], mid)
    inner = a + s_lo[:, None] * (b - a)
    outer = a + s_hi[:, None] * (b - a)
    # Within the last sampled interval the path may have crossed a third class first.
    found[idx] &= np.argmax(_predict(params, outer[idx]), axis=1) == tgt[idx]
    return np.where(found[:, None], inner, start), found


def _across(points, inputs):
    """Flip points pushed 1% further from their inputs: just across the boundary, in the target class."""
    return points + 0.01 * (points - inputs)


def _witness_starts(params, x0, lo, hi, w, src, tgt, witnesses, *, n_witnesses: int = 5, chunk: int = 256):
    """Flip points on segments from ``x0`` towards points the network assigns to the target class.

    For each problem, the ``n_witnesses`` nearest ``witnesses`` classified as ``tgt`` (moved
    into the problem's box, which also keeps its fixed features), and on each segment
    ``x0 -> witness`` the boundary point of :func:`_first_crossing`; the one nearest to ``x0``
    wins.  It is a feasible point of eqs. 2-5, usually not the closest one.  Problems are taken
    ``chunk`` at a time (fewer when there are many witnesses), so memory stays bounded.

    Returns
    -------
    starts : ndarray, shape (n, n_features)
        The boundary points (``x0`` where none was found).
    found : ndarray of bool, shape (n,)
    """
    n = len(x0)
    starts, found = x0.copy(), np.zeros(n, dtype=bool)
    if len(witnesses) == 0 or n == 0:
        return starts, found
    label_w = np.argmax(_predict(params, witnesses), axis=1)
    # At most about 2**24 squared distances at a time, however many witnesses there are.
    chunk = max(1, min(chunk, 2**24 // len(witnesses)))
    for c0 in range(0, n, chunk):
        sl = slice(c0, c0 + chunk)
        xs, ws_ = x0[sl], w[sl]
        d2 = np.sum(ws_ * xs**2, axis=1)[:, None] - 2.0 * (ws_ * xs) @ witnesses.T + ws_ @ (witnesses**2).T
        d2 = np.where(label_w[None] == tgt[sl, None], d2, np.inf)
        n_near = min(n_witnesses, d2.shape[1])
        nearest = np.argpartition(d2, n_near - 1, axis=1)[:, :n_near]  # the nearest, in linear time
        order = np.take_along_axis(nearest, np.argsort(np.take_along_axis(d2, nearest, axis=1), axis=1), axis=1)
        best = np.full(len(xs), np.inf)
        for k in range(order.shape[1]):
            valid = np.isfinite(d2[np.arange(len(xs)), order[:, k]])
            end = np.clip(witnesses[order[:, k]], lo[sl], hi[sl])
            inner, hit = _first_crossing(params, xs, end, src[sl], tgt[sl])
            dist = np.sqrt(np.sum(ws_ * (inner - xs) ** 2, axis=1))
            better = valid & hit & (dist < best)
            best[better] = dist[better]
            starts[sl][better] = np.clip(inner[better], lo[sl][better], hi[sl][better])
            found[sl] |= better
    return starts, found


def _boundary_walk(params, x0, lo, hi, w, src, tgt, witnesses, *, margin: float, n_rounds: int = 40, n_tries: int = 6):
    """Flip points for problems the SQP from ``x0`` could not solve, approached along the boundary.

    Starting from the boundary points of :func:`_witness_starts`, each round moves the current
    flip point ``s`` along the boundary towards ``x0``: the step is ``x0 - s`` projected (in the
    ``w``-metric) onto the tangent plane of ``c_j = z_i - z_j = 0`` at ``s`` (free features
    only), halved up to ``n_tries`` times.  Each trial point is brought back onto the boundary by
    :func:`_first_crossing`: on the segment from ``x0`` where it lies in the target class, along
    the boundary's normal towards the target class where it lies in the source class.  A trial is
    kept only if it is a flip point closer to ``x0``, so the distance decreases from round to
    round (a projected-gradient method on the boundary, which needs no constraint to be smooth:
    it works across the kinks of a ReLU network where the SQP stalls).

    Returns
    -------
    x : ndarray, shape (n, n_features)
        The closest flip point found (``x0`` where none was).
    evals : ndarray of int
        Jacobian evaluations per problem.
    found : ndarray of bool
    """
    n = len(x0)
    w = np.broadcast_to(w, x0.shape)
    free = (hi > lo).astype(float)
    current, found = _witness_starts(params, x0, lo, hi, w, src, tgt, witnesses)
    evals = np.zeros(n, dtype=np.int64)
    eye = np.eye(params.n_classes)

    def distance(points, rows):
        return np.sqrt(np.sum(w[rows] * (points - x0[rows]) ** 2, axis=1))

    best = np.where(found, distance(current, np.arange(n)), np.inf)
    active = np.flatnonzero(found)
    alpha = np.ones(n)
    short = dict(n_samples=16, n_halvings=40)  # the walk's segments are short
    for _ in range(n_rounds):
        if active.size == 0:
            break
        s = current[active]
        seeds = (eye[src[active]] - eye[tgt[active]])[:, None, :]
        a = vjp(params, forward(params, tf.constant(s)), tf.constant(seeds)).numpy()[:, 0] * free[active]
        evals[active] += 1
        a_w = a / w[active]  # W^{-1} a: the normal in the w-metric
        r = (x0[active] - s) * free[active]
        tangent = r - (np.sum(a * r, axis=1) / np.maximum(np.sum(a * a_w, axis=1), 1e-300))[:, None] * a_w
        moved = np.zeros(active.size, dtype=bool)
        for _ in range(n_tries):
            left = np.flatnonzero(~moved)
            if left.size == 0:
                break
            p = active[left]
            trial = np.clip(s[left] + alpha[p][:, None] * tangent[left], lo[p], hi[p])
            z = _predict(params, trial)
            label = np.argmax(z, axis=1)
            gap = z[np.arange(left.size), src[p]] - z[np.arange(left.size), tgt[p]]
            # In the target class: back along the segment from x0.  In the source class: along
            # the normal, four times the linear estimate of the distance to the boundary.
            in_target = label == tgt[p]
            beta = 4.0 * np.maximum(gap, 0.0) / np.maximum(np.sum(a[left] * a_w[left], axis=1), 1e-300)
            start = np.where(in_target[:, None], x0[p], trial)
            end = np.where(in_target[:, None], trial, np.clip(trial - beta[:, None] * a_w[left], lo[p], hi[p]))
            inner, hit = _first_crossing(params, start, end, src[p], tgt[p], **short)
            # Failing that, towards the point just beyond s on the ray from x0 (usually across).
            beyond = np.clip(_across(s[left], x0[p]), lo[p], hi[p])
            retry = np.flatnonzero(~hit & ~in_target)
            if retry.size:
                inner_r, hit_r = _first_crossing(params, trial[retry], beyond[retry], src[p[retry]], tgt[p[retry]], **short)
                inner[retry[hit_r]], hit[retry[hit_r]] = inner_r[hit_r], True
            inner = np.clip(inner, lo[p], hi[p])
            d_new = distance(inner, p)
            # Every other class below by the margin of eq. 4, as the SQP's constraints ask.
            z = _predict(params, inner)
            others = np.where((np.arange(params.n_classes)[None] == src[p, None]) | (np.arange(params.n_classes)[None] == tgt[p, None]),
                              -np.inf, z)
            clear = others.max(axis=1) <= z[np.arange(left.size), src[p]] - margin
            ok = hit & clear & (d_new < best[p] * (1.0 - 1e-9))
            current[p[ok]], best[p[ok]] = inner[ok], d_new[ok]
            moved[left[ok]] = True
            alpha[p[ok]] = np.minimum(2.0 * alpha[p[ok]], 1.0)
            alpha[p[~ok]] *= 0.5
        # A problem whose trials all failed this round keeps its (now much shorter) step.
        active = active[alpha[active] > 1e-4]
    return current, evals, found


def closest_flip_points(
    model,
    x,
    target,
    *,
    source=None,
    lower=None,
    upper=None,
    fixed=None,
    feature_weights=None,
    method: str = "homotopy",
    eta: int = 4,
    adaptive: bool = True,
    tau: float | None = None,
    schedule: str = "linear",
    margin: float = 1e-3,
    max_iter: int = 300,
    inner_iter: int = 20,
    path_tol: float = 1e-4,
    gap_tol: float = 1e-6,
    xtol: float = 1e-4,
    opt_tol: float = 1e-3,
    n_rows: int | None = None,
    fallback: str | None = "auto",
    restarts: int = 0,
    seed: int = 0,
    batch_size: int = 4096,
    progress: bool = False,
) -> FlipResult:
    """Closest flip points of a batch of inputs (eqs. 1-5) by homotopy (Algorithm 2) or directly.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        An erf network (:func:`fliplib.erf_network`) or a PReLU network.
    x : array_like, shape (n, n_features) or (n_features,)
        The inputs.
    target : int, array of shape (n,) or (n, r), or "all"
        Class ``j`` per input.  With ``"all"`` every class is a target and the results gain a
        class axis; the source class's entries are marked ``status=-1``, ``distance=inf``.
    source : int or array of shape (n,), optional
        Class ``i`` per input; default the predicted class.
    lower, upper : float or array of shape (n_features,) or (n, n_features), optional
        Box bounds (eq. 5).  Every input must lie within them.
    fixed : bool array of shape (n_features,) or (n, n_features), optional
        Features that may not move.
    feature_weights : array of shape (n_features,), optional
        Positive weights ``w`` of the distance ``sqrt(sum w (x_hat - x)^2)``.
    method : {"homotopy", "direct"}
        ``"homotopy"``: Algorithm 1 transforms the network per input (tau), Algorithm 2 walks it
        back (for PReLU networks, Algorithms F2-F3).  ``"direct"``: the inner solver on the
        original network from ``x`` (eta = 1 in the paper).
    eta : int
        Number of uniform homotopy steps; with ``adaptive`` the first step is ``1/eta``.
    adaptive : bool
        App. D.5: a step whose flip point is not found within ``inner_iter`` iterations is
        retreated from and halved; a successful step doubles the next one.
    tau : float, optional
        Lower bound on neuron slopes in Algorithm 1 (default 1e-5 for erf networks; for PReLU
        the slope ``alpha^h`` of Algorithm F2, default 0.5).
    schedule : {"linear", "inverse"}
        How the widths move along the path: linearly in ``sigma`` (the paper) or in ``1/sigma``
        (see :func:`fliplib.homotopy.interpolate`).
    margin : float
        Inequality margin: the solver asks ``z_i >= z_k + margin`` for the other classes (logit
        units), eq. 4's strict inequality with room to spare.  Success needs only ``z_i - z_k``
        above the gap tolerance (``min_margin`` reports the smallest difference), so a flip point
        may lie closer than ``margin`` to a third class where the solver could not keep it away.
    max_iter : int
        Iterations on the original network (the final homotopy stage, or all of ``"direct"``).
    inner_iter : int
        Iterations per intermediate homotopy step.
    path_tol : float
        Relative logit gap at which an intermediate flip point counts as found.
    gap_tol : float
        Success needs ``|z_i - z_j| <= gap_tol * max(1, |z_i|)`` (100x tighter than the authors' 1e-4).
    xtol : float
        The solver stops (once feasible) when its step is below ``xtol`` times the distance.  Near
        a solution the step is about the first-order optimality residual times the distance, so
        the default leaves a residual ten times below ``opt_tol``; the distance itself is then
        accurate to about ``xtol**2`` relative.  (The linearised constraints come from a float32
        Jacobian, :func:`fliplib.jacobian.vjp_float32`, accurate to about ``1e-6`` relative, so
        ``xtol`` much below that only costs iterations.)
    opt_tol : float
        Status 0 needs the relative optimality residual below this; above it, status 1.
    n_rows : int, optional
        Constraints linearised per iteration: the target and the ``n_rows - 1`` other classes
        closest to winning.  Default: all ``n_classes - 1`` (exact; fewer is cheaper with many
        classes but can stall where several classes compete).
    fallback : {"auto", "failed", "closer", None}
        With ``method="homotopy"``: ``"failed"`` solves the problems whose homotopy path fails
        again directly from ``x`` (App. D.4's "alternative path"); ``"closer"`` does so for every
        problem and keeps the closer feasible answer (twice the work, fewer poor local minima);
        ``None`` reports the homotopy's own answer.  ``"auto"`` (the default) is ``"failed"`` on
        erf networks and ``"closer"`` on PReLU networks, whose many kinks leave each path in a
        local minimum (the two paths often end in different ones; benchmarks/README.md
        measures the difference).  With either fallback, a problem that still
        fails is approached from the boundary: bisection on the segment towards the nearest
        point of the target class (an input of the batch, or a flip point found for another
        problem, pushed 1% across its boundary) gives a flip point, which is then walked along the
        boundary towards ``x`` (projected steps, each brought back onto the boundary by bisection;
        only closer flip points are kept).
        This rescues most local minima of the constraint violation at the kinks of ReLU
        networks; such answers are feasible but not always locally closest, and their status
        (0 or 1) and optimality residual say which.  The witnesses come from the same call, so
        such a problem's answer can depend on the other problems solved with it (the same call
        always gives the same answer).
    restarts : int
        Finally, solve every problem this many more times directly (``"direct"``), from starts drawn around
        ``x`` (Gaussian, standard deviation alternately 0.1 and 0.3 times ``max(1, rms(x))``, moved
        into the bounds), and keep a new flip point where it is closer (so restarts never lose a
        flip point or move one farther): the several starting points an
        off-the-shelf solver is given, for networks whose many local minima trap a single path
        (sharp erf networks with exploding gradients).  Each restart costs about one direct solve.
    seed : int
        Seeds the restarts' starting points (no global state is used).
    batch_size : int
        Problems solved together.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    FlipResult
    """
    params = network_params(model)
    if fallback not in ("auto", "failed", "closer", None):
        raise ValueError(f"fallback must be 'auto', 'failed', 'closer' or None, got {fallback!r}")
    if fallback == "auto":
        fallback = "closer" if params.activation == "prelu" else "failed"
    if method not in ("homotopy", "direct"):
        raise ValueError(f"method must be 'homotopy' or 'direct', got {method!r}")
    if not (isinstance(eta, (int, np.integer)) and eta >= 1):
        raise ValueError(f"eta must be a positive integer, got {eta!r}")
    for name, value in (("max_iter", max_iter), ("inner_iter", inner_iter), ("batch_size", batch_size)):
        positive_int(name, value)
    positive_int("restarts", restarts, allow_zero=True)
    for name, value in (("margin", margin), ("path_tol", path_tol), ("gap_tol", gap_tol), ("xtol", xtol), ("opt_tol", opt_tol)):
        positive_number(name, value, allow_inf=name == "opt_tol")
    if tau is None:
        tau = 1e-5 if params.activation == "erf" else 0.5
    x, lo, hi, w = _check_inputs(params, x, lower, upper, fixed, feature_weights)
    src, tgt, keep_axis = _check_classes(params, x, target, source)
    n, r = tgt.shape
    pairs_in, pairs_t = np.nonzero(tgt != src[:, None])
    flat_t = tgt[pairs_in, pairs_t]
    rows = params.n_classes - 1 if n_rows is None else max(1, min(int(n_rows), params.n_classes - 1))
    step_fn = _sqp_step(params.activation, params.n_classes, rows, len(params.weights))
    options = dict(eta=int(eta), adaptive=adaptive, tau=tau, schedule=schedule, margin=margin, max_iter=max_iter, inner_iter=inner_iter,
                   path_tol=path_tol, gap_tol=gap_tol, xtol=xtol, step_fn=step_fn)

    def solve(problems, how, starts=None):
        x_out = np.empty((len(problems), params.n_features))
        jac_out = np.zeros(len(problems), dtype=np.int64)
        steps_out = np.zeros(len(problems), dtype=np.int64)
        batches = range(0, len(problems), batch_size)
        for start in tqdm(batches, desc=f"flip points ({how})", disable=not progress or len(batches) < 2):
            sl = slice(start, start + batch_size)
            idx = pairs_in[problems[sl]]
            x_out[sl], jac_out[sl], steps_out[sl] = _solve_batch(
                params, x[idx], lo[idx], hi[idx], np.broadcast_to(w, (len(idx), len(w))), src[idx],
                flat_t[problems[sl]], method=how, x_start=None if starts is None else starts[sl], **options,
            )
        ev_out = flip_evidence(params, x[pairs_in[problems]], x_out, src[pairs_in[problems]], flat_t[problems],
                               lower=lo[pairs_in[problems]], upper=hi[pairs_in[problems]], feature_weights=w, margin=margin)
        return x_out, jac_out, steps_out, ev_out

    everything = np.arange(len(pairs_in))
    x_hat, n_jac, steps, ev = solve(everything, method)

    def adopt(problems, x_new, ev_new):
        """Keep the new answers of ``problems`` that are flip points where the current ones are
        not, or closer ones; returns which current and new answers are flip points, and which
        new ones were kept."""
        ok_now = status_from_evidence(ev, gap_tol=gap_tol, opt_tol=opt_tol)[problems] <= 1
        ok_new = status_from_evidence(ev_new, gap_tol=gap_tol, opt_tol=opt_tol) <= 1
        better = ok_new & (~ok_now | (ev_new["distance"] < ev["distance"][problems]))
        x_hat[problems[better]] = x_new[better]
        for key in ev:
            ev[key][problems[better]] = ev_new[key][better]
        return ok_now, ok_new, better

    def across(points, problems):
        return _across(points, x[pairs_in[problems]])

    witnesses = [x]
    if method == "homotopy" and fallback is not None:
        # App. D.4: where the path breaks (or, with "closer", everywhere), try another path:
        # the direct solve from x; keep the feasible answer, the closer one if both are.
        ok = status_from_evidence(ev, gap_tol=gap_tol, opt_tol=opt_tol) <= 1
        again = everything[~ok] if fallback == "failed" else everything
        if again.size:
            x_f, jac_f, _, ev_f = solve(again, "direct")
            n_jac[again] += jac_f
            before = x_hat[again]
            was_ok, ok_f, better = adopt(again, x_f, ev_f)
            # The flip points not kept still show where the target classes are.
            unused, replaced = ok_f & ~better, better & was_ok
            witnesses += [across(x_f[unused], again[unused]), across(before[replaced], again[replaced])]
        # A third path for what still fails (a local minimum of the violation, common at the
        # kinks of ReLU networks): a walk along the boundary from outside (see `_boundary_walk`).
        # Each pass's new flip points are witnesses for the next one.
        for _ in range(3):
            ok = status_from_evidence(ev, gap_tol=gap_tol, opt_tol=opt_tol) <= 1
            again = everything[~ok]
            if again.size == 0:
                break
            walked, jac_w, found = _boundary_walk(params, x[pairs_in[again]], lo[pairs_in[again]], hi[pairs_in[again]],
                                                  w, src[pairs_in[again]], flat_t[again],
                                                  np.concatenate(witnesses + [across(x_hat[ok], everything[ok])]), margin=margin)
            n_jac[again] += jac_w
            if not found.any():
                break
            redo = again[found]
            ev_w = flip_evidence(params, x[pairs_in[redo]], walked[found], src[pairs_in[redo]], flat_t[redo],
                                 lower=lo[pairs_in[redo]], upper=hi[pairs_in[redo]], feature_weights=w, margin=margin)
            x_hat[redo] = walked[found]
            for key in ev:
                ev[key][redo] = ev_w[key]
    # Restarts: direct solves from perturbed starts, as an off-the-shelf solver would be given;
    # last, so that they only ever replace an answer by a closer flip point.
    if restarts:  # (the inputs and bounds per problem are copies: none is made without restarts)
        rng = np.random.default_rng(seed)
        x_p, lo_p, hi_p = x[pairs_in], lo[pairs_in], hi[pairs_in]
        spread = np.maximum(1.0, np.sqrt(np.mean(x_p**2, axis=1)))[:, None]
        for k in range(restarts):
            starts = np.clip(x_p + (0.1, 0.3)[k % 2] * spread * rng.standard_normal(x_p.shape), lo_p, hi_p)
            x_r, jac_r, _, ev_r = solve(everything, "direct", starts)
            n_jac += jac_r
            adopt(everything, x_r, ev_r)
    status = status_from_evidence(ev, gap_tol=gap_tol, opt_tol=opt_tol)

    def scatter(values, fill, dtype=None):
        arr = np.full((n, r) + np.shape(values)[1:], fill, dtype=dtype or np.asarray(values).dtype)
        arr[pairs_in, pairs_t] = values
        return arr

    result = FlipResult(
        x=scatter(x_hat, np.nan),
        distance=scatter(ev["distance"], np.inf),
        success=scatter(status <= 1, False),
        status=scatter(status, -1),
        message=scatter(np.array([STATUS_MESSAGES[s] for s in status], dtype=object), STATUS_MESSAGES[-1], object),
        source=np.repeat(src[:, None], r, axis=1),
        target=tgt.copy(),
        logit_gap=scatter(ev["logit_gap"], np.nan),
        min_margin=scatter(ev["min_margin"], np.nan),
        bound_violation=scatter(ev["bound_violation"], np.nan),
        optimality=scatter(ev["optimality"], np.nan),
        n_jacobian_evals=scatter(n_jac, 0),
        n_homotopy_steps=scatter(steps, 0),
        method=method,
    )
    if keep_axis:
        return result
    return FlipResult(**{name: getattr(result, name)[:, 0] for name in result._per_point_fields()}, method=method)
