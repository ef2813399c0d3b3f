"""Closest flip points (eqs. 1-5): the problem, the method, and the evidence of every answer.

For each input ``x`` with class ``i`` and a target class ``j`` we solve

    min ||x_hat - x||_w   s.t.   z_i(x_hat) = z_j(x_hat),   z_i(x_hat) >= z_k(x_hat) + margin (k != i, j),
                                 lower <= x_hat <= upper,    x_hat_f = x_f for fixed features f,

on the logits ``z``, for a whole batch at once.  :func:`closest_flip_points` reads as the method:
check the input; transform the network (Algorithm 1, :mod:`fliplib.homotopy`); follow the path
back to the original network, solving with the inner solver F at each step (Algorithm 2,
:func:`fliplib.homotopy.follow_path`; F is the batched SQP of :mod:`fliplib.sqp`); rescue what
fails (:mod:`fliplib.rescue`); and judge every answer by its evidence (:func:`flip_evidence`),
measured in float64 on the original network independently of the solver's path.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from . import homotopy, rescue, sqp
from .search import global_stage, nearest_linearised_class
from ._checks import check_class_range, check_distinct, check_inputs, check_points, class_indices, whole_numbers
from .options import FlipOptions
from .jacobian import vjp
from .params import NetworkParams, forward, network_params

__all__ = ["FlipOptions", "FlipResult", "STATUS_MESSAGES", "closest_flip_points", "flip_evidence",
           "status_from_evidence"]

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
        ``||x_hat - x||_w`` (2-norm, weighted by ``feature_weights`` if given) of a flip point;
        ``inf`` where the problem failed (``x`` then holds the failed attempt, and the other
        fields its evidence) or was not computed, so that ``distance.min()`` is the closest flip
        point found.
    success : ndarray of bool
        True only when the logit gap is below ``gap_tol * max(1, |z_i|)``, every other logit is
        below ``z_i`` by more than that tolerance, and every bound and fixed feature holds.
    status : ndarray of int
        See :data:`STATUS_MESSAGES`.
    message : ndarray of str
        The status in words.
    source : ndarray of int
        Class ``i``, the source class.
    target : ndarray of int
        Class ``j``, the target class.
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
    search_radius : ndarray
        Radius of the ball around ``x`` that the global stage searched (the distance of the
        first flip point it improved on, or of the box where none was known; 0 with
        ``search="local"``): every flip point it checked lay within this distance.
    n_starts : ndarray of int
        Starts from which the inner solver ran for the problem (the path and its fallbacks
        count one each, every start of the global stage one).
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
    search_radius: np.ndarray
    n_starts: np.ndarray
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

    def keep_closer(self, rows, other: "FlipResult") -> "FlipResult":
        """This result, with ``other``'s answers to the problems at ``rows`` where they are better.

        For a second attempt at some of the problems (for example, the failures of a cheap
        solver solved again by the default one): ``other`` holds one answer per entry of
        ``rows``, and an answer replaces this result's only where it succeeded and is closer
        (every failure has distance ``inf``). Every replaced answer keeps its own evidence and
        its own counts (``n_jacobian_evals``, ``n_starts``: the cost of the first attempt at it
        is not added); ``method`` stays this result's. The returned result is new, and this one
        is left as it was.

        Both attempts must solve the same problems: the same source and target classes (which
        is checked), and the same inputs, bounds, fixed features and weights (which cannot be).
        Results of ``target="any"`` or of :meth:`closest`, whose target classes depend on the
        answer, are therefore merged only where both attempts name the same class.

        Parameters
        ----------
        rows : array_like of int
            Indices into the first axis of this result, without repeats (negative ones count
            from the end).
        other : FlipResult
            The second attempt, shaped like this result's entries at ``rows``.

        Returns
        -------
        FlipResult
            Shaped like this result.

        Raises
        ------
        ValueError
            If ``rows`` is not a 1-D array of integers or repeats an index, or ``other`` has the
            wrong shape or solves different problems.
        IndexError
            If an index in ``rows`` is out of range.
        """
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"rows must be a 1-D array of integer indices, got shape {rows.shape} "
                             f"and dtype {rows.dtype}")
        rows = rows.astype(np.intp)
        n = len(self.distance)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"rows must lie in [-{n}, {n}), got {rows.min()}..{rows.max()}")
        rows = rows % n if n else rows
        if len(np.unique(rows)) != len(rows):
            raise ValueError("rows must not repeat an index")
        if other.distance.shape != (len(rows),) + self.distance.shape[1:]:
            raise ValueError(f"other has {other.distance.shape} problems; {len(rows)} rows of this "
                             f"result have {(len(rows),) + self.distance.shape[1:]}")
        if other.x.shape[-1] != self.x.shape[-1]:
            raise ValueError(f"other's flip points have {other.x.shape[-1]} features, this result's "
                             f"{self.x.shape[-1]}")
        same = (np.array_equal(other.source, self.source[rows])
                and np.array_equal(other.target, self.target[rows]))
        if not same:
            raise ValueError("other solves different problems: its source or target classes differ "
                             "from this result's at rows")
        better = other.success & (other.distance < self.distance[rows])
        out = {}
        for name in self._per_point_fields():
            mine, theirs = getattr(self, name), getattr(other, name)
            arr = mine.copy()
            arr[rows] = np.where(better.reshape(better.shape + (1,) * (mine.ndim - better.ndim)),
                                 theirs, mine[rows])
            out[name] = arr
        return FlipResult(**out, method=self.method)

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

    @classmethod
    def from_evidence(cls, x_hat, evidence: dict, *, source, target, n_jacobian_evals, n_homotopy_steps,
                      method: str, gap_tol: float, opt_tol: float, search_radius=0.0, n_starts=1) -> "FlipResult":
        """One result per problem from the points and their :func:`flip_evidence`: the status
        of :func:`status_from_evidence`, and ``inf`` as the distance of a failed problem."""
        status = status_from_evidence(evidence, gap_tol=gap_tol, opt_tol=opt_tol)
        return cls(
            x=np.asarray(x_hat, dtype=np.float64), distance=np.where(status <= 1, evidence["distance"], np.inf),
            success=status <= 1, status=status,
            message=np.array([STATUS_MESSAGES[s] for s in status], dtype=object),
            source=np.asarray(source), target=np.asarray(target), logit_gap=evidence["logit_gap"],
            min_margin=evidence["min_margin"], bound_violation=evidence["bound_violation"],
            optimality=evidence["optimality"], n_jacobian_evals=np.asarray(n_jacobian_evals, dtype=np.int64),
            n_homotopy_steps=np.asarray(n_homotopy_steps, dtype=np.int64),
            search_radius=np.broadcast_to(np.asarray(search_radius, dtype=np.float64), status.shape).copy(),
            n_starts=np.broadcast_to(np.asarray(n_starts, dtype=np.int64), status.shape).copy(), method=method,
        )

    def _scatter(self, n: int, rows, cols, target: np.ndarray) -> "FlipResult":
        """This flat result placed at ``(rows, cols)`` of an ``(n, r)`` result; the other entries
        (the source class among the targets) are "not computed", status -1."""
        fill = {"x": np.nan, "distance": np.inf, "success": False, "status": -1, "message": STATUS_MESSAGES[-1],
                "logit_gap": np.nan, "min_margin": np.nan, "bound_violation": np.nan, "optimality": np.nan,
                "n_jacobian_evals": 0, "n_homotopy_steps": 0, "search_radius": 0.0, "n_starts": 0}
        out = {}
        for name, value in fill.items():
            flat = getattr(self, name)
            arr = np.full(target.shape + flat.shape[1:], value, dtype=flat.dtype)
            arr[rows, cols] = flat
            out[name] = arr
        source = np.full(target.shape, -1, dtype=np.int64)
        source[rows, cols] = self.source
        source = np.repeat(np.max(source, axis=1, keepdims=True), target.shape[1], axis=1)
        return FlipResult(**out, source=source, target=target.copy(), method=self.method)

    def __repr__(self) -> str:
        shape = self.distance.shape
        done = self.status != -1
        rate = self.success[done].mean() if done.any() else math.nan
        return f"FlipResult(method={self.method!r}, problems={shape}, success rate={rate:.4f})"




def _check_classes(params: NetworkParams, x: np.ndarray, target, source):
    n, n_classes = len(x), params.n_classes
    if n == 0:
        raise ValueError("x holds no inputs (shape (0, n_features))")
    logits = forward(params, x).logits.numpy()
    if not np.all(np.isfinite(logits)):
        raise ValueError("the network output is not finite at some input")
    src = np.argmax(logits, axis=1) if source is None else class_indices("source", source, n, n_classes)
    all_targets = isinstance(target, str)
    if all_targets:
        if target != "all":
            raise ValueError(f"target must be a class index, an array of class indices, 'all' or 'any', got {target!r}")
        tgt = np.broadcast_to(np.arange(n_classes), (n, n_classes))
    else:
        arr = whole_numbers("target", target)
        if arr.ndim == 0:
            tgt = np.full((n, 1), arr)
        elif arr.shape == (n,):
            tgt = arr[:, None]
        elif arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] > 0:
            tgt = arr
        else:
            raise ValueError(f"target must be a scalar, shape ({n},), shape ({n}, r) with r >= 1 or 'all'; got {arr.shape}")
        tgt = check_class_range("target", tgt, n_classes)
        check_distinct(src, tgt)
    return src, np.asarray(tgt, dtype=np.int64), all_targets or (np.ndim(target) == 2)


# --------------------------------------------------------------------------------------------
# Evidence, measured on the original network independently of the solver's path
# --------------------------------------------------------------------------------------------


def flip_evidence(model, x, x_hat, source, target, *, lower=None, upper=None, fixed=None,
                  feature_weights=None, margin: float = 1e-3, active_tol: float = 1e-4) -> dict:
    """Measure how well ``x_hat`` solves eqs. 1-5 for ``x`` on the original network.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x, x_hat : ndarray, shape (n, n_features)
    source, target : ndarray of int, shape (n,)
    lower, upper, fixed, feature_weights, margin
        As for :func:`closest_flip_points`.
    active_tol : float
        An inequality counts as active when ``z_i - z_k <= margin + active_tol * max(1, |z_i|)``
        (its multiplier must then be nonnegative); a bound when the feature lies within
        ``1e-6`` (relative) of it.  The default, a tenth of the default margin, is the
        ``epsilon``-active set of an ``epsilon``-KKT test: a flip point the solver leaves
        ``1e-5`` above the margin of a class that binds at the optimum is judged as binding.

    Returns
    -------
    dict of ndarray
        ``logit_gap``, ``z_source`` (``|z_i|``), ``min_margin``, ``bound_violation``,
        ``optimality``, ``distance`` and ``finite``.
    """
    params = network_params(model)
    x, lo, hi, w = check_inputs(params.n_features, x, lower, upper, fixed, feature_weights)
    if len(x) == 0:
        raise ValueError("x holds no inputs (shape (0, n_features))")
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x_hat.shape != x.shape and not (np.ndim(x_hat) == 1 and x.shape == (1, x_hat.size)):
        raise ValueError(f"x_hat must have the shape of x, {x.shape}; got {x_hat.shape}")
    x_hat = x_hat.reshape(x.shape)
    src = class_indices("source", source, len(x), params.n_classes)
    tgt = class_indices("target", target, len(x), params.n_classes)
    check_distinct(src, tgt[:, None])
    # A non-finite candidate is judged (status 5, "finite" False), not differentiated: its
    # gradients are taken at x instead and its optimality residual is NaN.
    finite_hat = np.all(np.isfinite(x_hat), axis=1)
    x_eval = np.where(finite_hat[:, None], x_hat, x)
    out = {k: [] for k in ("logit_gap", "z_source", "min_margin", "optimality", "finite")}
    for start in range(0, len(x), 2048):
        sl = slice(start, start + 2048)
        xh = tf.constant(x_eval[sl])
        fwd = forward(params, xh)
        c, gap, _, min_other, zi = sqp.constraint_values(fwd.logits, tf.constant(src[sl]), tf.constant(tgt[sl]), 0.0)
        c = c.numpy()
        n_sl = len(c)
        near = margin + active_tol * np.maximum(1.0, zi.numpy())[:, None]
        active = (c <= near) & (np.arange(params.n_classes)[None] != src[sl, None])
        active[np.arange(n_sl), tgt[sl]] = True
        # Gradients grad(z_i - z_k) of the active constraints only (usually just the target's):
        # slot 0 holds the target, the k-th slot the k-th other active class, or a zero row.
        first = np.where(active, 1, 2) - (np.arange(params.n_classes)[None] == tgt[sl, None])
        order = np.argsort(first, axis=1, kind="stable")[:, : active.sum(axis=1).max()]
        slot_active = np.take_along_axis(active, order, axis=1)
        seeds = (np.eye(params.n_classes)[src[sl]][:, None, :] - np.eye(params.n_classes)[order]) * slot_active[:, :, None]
        A = vjp(params, fwd, tf.constant(seeds)).numpy()  # (n, a, d)
        usable = finite_hat[sl] & np.all(np.isfinite(A), axis=(1, 2))
        A = np.where(usable[:, None, None], A, 0.0)
        opt = _optimality_residual(A, slot_active, x_eval[sl], x[sl], lo[sl], hi[sl], w, usable)
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


#: Bound activity of :func:`_optimality_residual`: a feature within this (relative) of a bound.
BOUND_TOL = 1e-6
#: Inequalities whose sign patterns :func:`_optimality_residual` enumerates (2**8 least-squares
#: solves at most, for ten classes); beyond, their multipliers are left unsigned.
MAX_SIGNED = 8


def _optimality_residual(A, active, x_hat, x, lo, hi, w, usable) -> np.ndarray:
    """Relative first-order residual: the part of ``W (x_hat - x)`` outside the cone of the
    active constraints' gradients ``A`` and the active bounds, over ``||W (x_hat - x)||``.

    Slot 0 of ``A`` is the target's equality (a multiplier of either sign); the other active
    slots are inequalities, whose multipliers must be nonnegative (KKT).  The cone is searched
    exactly: least squares on every subset of the inequalities, keeping the best fit whose
    multipliers are nonnegative (the empty subset always qualifies)."""
    g = w * (x_hat - x)
    scale = np.maximum(np.abs(x_hat), 1.0) * BOUND_TOL
    at_lo = x_hat <= lo + scale
    at_hi = x_hat >= hi - scale
    pinned = lo >= hi  # fixed features: their multiplier may have either sign
    free = ~(at_lo | at_hi)
    norm_g = np.maximum(np.linalg.norm(g, axis=1), 1e-300)
    n_ineq = active.shape[1] - 1
    signed = n_ineq <= MAX_SIGNED
    best = np.full(len(g), np.inf)
    for subset in range(2**n_ineq if signed else 1):
        keep = np.array([True] + [bool(subset >> k & 1) or not signed for k in range(n_ineq)])
        # Least-squares multipliers on the free features, all points at once (an inactive row
        # is zero, so its multiplier is zero in the minimum-norm solution).
        rows = A * (active & keep)[:, :, None]  # (n, slots, d)
        system = np.swapaxes(rows * free[:, None, :], 1, 2)  # (n, d, slots)
        eps = np.finfo(np.float64).eps * max(system.shape[1:])
        coef = np.einsum("nkd,nd->nk", np.linalg.pinv(system, rcond=eps), g * free)
        resid = g - np.einsum("nk,nkd->nd", coef, rows)
        resid = (
            np.where(free, resid, 0.0)
            + np.where(at_lo & ~at_hi, np.minimum(resid, 0.0), 0.0)
            + np.where(at_hi & ~at_lo, np.maximum(resid, 0.0), 0.0)
        )
        value = np.linalg.norm(np.where(pinned, 0.0, resid), axis=1) / norm_g
        cone = np.all(coef[:, 1:] >= 0.0, axis=1) | (not signed)
        best = np.where(cone, np.minimum(best, value), best)
    return np.where(usable, best, np.nan)


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
# The method
# --------------------------------------------------------------------------------------------


def closest_flip_points(model, x, target, *, source=None, lower=None, upper=None, fixed=None, feature_weights=None,
                        method: str = "homotopy", search: str = "global", witnesses=None,
                        options: FlipOptions | dict | None = None) -> FlipResult:
    """Closest flip points of a batch of inputs (eqs. 1-5): homotopy (Algorithm 2), then a global search.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        An erf network (:func:`fliplib.erf_network`) or a PReLU network.
    x : array_like, shape (n, n_features) or (n_features,)
        The inputs.
    target : int, array of shape (n,) or (n, r), "all" or "any"
        Class ``j`` per input.  With ``"all"`` every class is a target and the results gain a
        class axis; the source class's entries are marked ``status=-1``, ``distance=inf``.
        With ``"any"``, the closest flip point over all other classes, as one search per input
        (the result's ``target`` says which class it borders): a short solve towards every other
        class ranks them, the method solves the ``options.any_classes`` nearest, and the global
        stage searches the ball for any class.
    source : int or array of shape (n,), optional
        Class ``i`` per input; default the predicted class.
    lower, upper : float or array of shape (n_features,) or (n, n_features), optional
        Box bounds (eq. 5).  Every input must lie within them.
    fixed : bool array of shape (n_features,) or (n, n_features), optional
        Features that may not move.
    feature_weights : float or array of shape (n_features,), optional
        Positive weights ``w`` of the distance ``sqrt(sum w (x_hat - x)^2)``.
    method : {"homotopy", "direct"}
        ``"homotopy"``: Algorithm 1 transforms the network per input, Algorithm 2 walks it back
        (for PReLU networks, Algorithms F2-F3).  ``"direct"``: the inner solver on the original
        network from ``x`` (eta = 1 in the paper).
    search : {"global", "local"}
        ``"global"`` (the default) then searches the ball around ``x`` that the first flip point
        defines for closer ones (:mod:`fliplib.search`); ``"local"`` returns the local method's
        answer (cheaper, and often a farther local minimum).
    witnesses : array_like, shape (m, n_features), optional
        Further points, such as the training set, each of the class the network assigns to it
        (labels are not used).  The global stage also starts from boundary points on the
        segments from ``x`` towards the nearest of them of the target class
        (:func:`fliplib.rescue.witness_starts`), as it does towards the inputs of the call, and
        the fallback's boundary walk starts from them too (with ``search="local"`` as well).
    options : FlipOptions or dict, optional
        The solver's tunables (:class:`FlipOptions`), e.g. ``dict(max_iter=50, restarts=2)``.

    Returns
    -------
    FlipResult
        Every answer with its evidence; a failed problem has ``success=False`` and distance ``inf``.

    Examples
    --------
    >>> import numpy as np, fliplib
    >>> net = fliplib.erf_network([2, 8, 3], seed=0)
    >>> res = fliplib.closest_flip_points(net, np.array([[0.5, -0.2]]), "any")
    >>> bool(res.success[0])
    True
    """
    params = network_params(model)
    opts = FlipOptions.from_any(options)
    if method not in ("homotopy", "direct"):
        raise ValueError(f"method must be 'homotopy' or 'direct', got {method!r}")
    if search not in ("global", "local"):
        raise ValueError(f"search must be 'global' or 'local', got {search!r}")
    x, lo, hi, w = check_inputs(params.n_features, x, lower, upper, fixed, feature_weights)
    extra = None if witnesses is None else check_points("witnesses", witnesses, params.n_features)
    any_class = isinstance(target, str) and target == "any"
    src, tgt, keep_axis = _check_classes(params, x, "all" if any_class else target, source)
    if any_class:  # one problem per input; its class may change when a closer one is found
        inputs, cols = np.arange(len(x)), np.zeros(len(x), np.int64)
        screen = _screen_classes(params, x, lo, hi, w, src, opts)
        candidates = screen.classes[:, : opts.any_classes]
        tgt = candidates[:, :1]
    else:
        inputs, cols = np.nonzero(tgt != src[:, None])  # one problem per (input, target) pair
    batch = _Batch(params, x, lo, hi, w, src, inputs, tgt[inputs, cols], opts, witnesses=extra)
    everything = np.arange(len(inputs))
    x_hat, n_jac, steps = batch.solve(everything, method)  # Algorithms 1 and 2 with F, or F alone
    answers = _Answers(x_hat, batch.judge(everything, x_hat), n_jac, np.ones(len(inputs), np.int64), batch)
    batch.found.append(rescue.across(x_hat[answers.ok()], x[inputs[answers.ok()]]))
    if method == "homotopy" and batch.fallback is not None:
        rescue.alternative_paths(batch, answers, everything)
    if any_class:  # "any": the screen's own flip points, then the method for the next nearest classes
        answers.n_jac += screen.n_jac
        answers.adopt(everything, screen.x, screen.ev, tgt=screen.classes[:, 0])
        for alternative in candidates[:, 1:].T:
            x_a, jac_a, _ = batch.solve(everything, method, tgt=alternative)
            answers.n_jac += jac_a
            answers.adopt(everything, x_a, batch.judge(everything, x_a, tgt=alternative), tgt=alternative)
    rng = np.random.default_rng(opts.seed)
    radius = np.zeros(len(inputs))
    if search == "global":
        radius, n_starts = global_stage(batch, answers, everything, rng,
                                        any_classes=screen.classes if any_class else None)
        answers.n_starts += n_starts
    for k in range(opts.restarts):  # restarts only ever replace an answer by a closer one
        starts = rescue.restart_points(batch.x[inputs], lo[inputs], hi[inputs], k, rng)
        answers.try_starts(everything, starts)
    _polish(answers, everything)
    flat = FlipResult.from_evidence(answers.x, answers.ev, source=src[inputs], target=batch.tgt,
                                    n_jacobian_evals=answers.n_jac, n_homotopy_steps=steps, method=method,
                                    gap_tol=opts.gap_tol, opt_tol=opts.opt_tol, search_radius=radius,
                                    n_starts=answers.n_starts)
    if any_class:
        return flat
    result = flat._scatter(len(x), inputs, cols, tgt)
    if keep_axis:
        return result
    return FlipResult(**{name: getattr(result, name)[:, 0] for name in result._per_point_fields()}, method=method)


class _Screen(NamedTuple):
    """``target="any"``: the other classes of each input, nearest first, and the screen's
    closest flip point (of class ``classes[:, 0]``) with its evidence and Jacobian evaluations."""

    classes: np.ndarray  # (n, n_classes - 1)
    x: np.ndarray  # (n, n_features)
    ev: dict  # flip_evidence of x
    n_jac: np.ndarray  # (n,)


#: The screen's flip points rank classes, so each stops once its step is below 1% of its distance
#: (the one adopted as an answer is polished later if it is not first-order optimal).
SCREEN_XTOL = 1e-2


def _screen_classes(params, x, lo, hi, w, src, opts: FlipOptions) -> _Screen:
    """Order the other classes of each input by the distance of a cheap flip point towards each.

    F runs from ``x`` towards every other class for ``opts.any_screen_iter`` iterations (or until
    its step is below :data:`SCREEN_XTOL` of the distance) with the three most threatening rows
    linearised; the classes are ordered by the distance of the point found where it is a flip
    point or nearly one (no feasibility restoration: a ranking needs none), those without one
    last, by the linearised distance of :func:`fliplib.search.nearest_linearised_class`.  A
    linearisation at ``x`` alone ranks classes poorly on a trained network: on chapter 3's NET1
    its first class was the closest one for about half of the inputs.
    """
    n, n_other = len(x), params.n_classes - 1
    linearised = nearest_linearised_class(params, x, src, w, k=n_other)  # (n, n_other), a fallback order
    quick = dataclasses.replace(opts, max_iter=opts.any_screen_iter, n_rows=min(3, n_other),
                                restarts=0, fallback=None, xtol=max(opts.xtol, SCREEN_XTOL))
    inputs = np.repeat(np.arange(n), n_other)
    batch = _Batch(params, x, lo, hi, w, src, inputs, linearised.ravel(), quick)
    every = np.arange(len(inputs))
    x_hat, n_jac, _ = batch.solve(every, "direct", restore=False)
    ev = batch.judge(every, x_hat)
    # A flip point, or nearly one where F stopped a little off the boundary (the logit gap within
    # a tenth of max(1, |z_i|), every other class below): its distance ranks the class.
    near = ev["finite"] & (ev["bound_violation"] <= 0) & (ev["min_margin"] > 0)
    near &= ev["logit_gap"] <= 0.1 * np.maximum(1.0, ev["z_source"])
    distance = np.where(near, ev["distance"], np.inf).reshape(n, n_other)
    order = np.argsort(distance, axis=1, kind="stable")  # ties (no flip point) keep the linearised order
    classes = np.take_along_axis(linearised, order, axis=1)
    first = np.arange(n) * n_other + order[:, 0]
    return _Screen(classes=classes, x=x_hat[first], ev={key: value[first] for key, value in ev.items()},
                   n_jac=n_jac.reshape(n, n_other).sum(axis=1))


class _Batch:
    """The problems of one call, and the solves and judgements the method composes."""

    def __init__(self, params, x, lo, hi, w, src, inputs, tgt, opts: FlipOptions, witnesses=None):
        self.params, self.x, self.lo, self.hi, self.w, self.src = params, x, lo, hi, w, src
        self.inputs, self.tgt, self.opts = inputs, np.array(tgt, dtype=np.int64), opts
        self.fallback = opts.fallback
        if opts.fallback == "auto":
            self.fallback = "closer" if params.activation == "prelu" else "failed"
        self.tau = opts.tau if opts.tau is not None else (1e-5 if params.activation == "erf" else 0.5)
        n_rows = params.n_classes - 1 if opts.n_rows is None else min(opts.n_rows, params.n_classes - 1)
        self.step_fn = sqp.sqp_step(params.activation, params.n_classes, n_rows, len(params.weights))
        self.extra = np.empty((0, x.shape[1])) if witnesses is None else witnesses  # the caller's witnesses
        self.found = []  # flip points found so far, pushed across: witnesses of their target class
        self.solved_from_x = np.zeros(len(inputs), bool)  # F has run from x itself (the direct path)

    def problems(self, idx, tgt=None) -> sqp.Problems:
        """The problems ``idx`` as arrays (made per batch: no copy of every input per target)."""
        rows = self.inputs[idx]
        return sqp.Problems(self.x[rows], self.lo[rows], self.hi[rows], np.broadcast_to(self.w, (len(rows), len(self.w))),
                            self.src[rows], self.tgt[idx] if tgt is None else np.asarray(tgt, dtype=np.int64))

    def witnesses(self) -> np.ndarray:
        """Points of known class: the inputs of the call, the caller's witnesses and the flip points
        found, pushed across."""
        return np.concatenate([self.x, self.extra] + self.found)

    def solve(self, idx, how: str, starts=None, tgt=None, restore: bool = True):
        """Flip points of problems ``idx``: the path (``"homotopy"``) or F from ``starts`` (``"direct"``);
        ``restore=False`` skips the feasibility restoration where F stalls off the boundary."""
        o, params = self.opts, self.params
        x_out = np.empty((len(idx), params.n_features))
        jac_out, steps_out = np.zeros(len(idx), np.int64), np.zeros(len(idx), np.int64)
        batches = range(0, len(idx), o.batch_size)
        for b in tqdm(batches, desc=f"flip points ({how})", disable=not o.progress or len(batches) < 2):
            sl = slice(b, b + o.batch_size)
            problems = self.problems(idx[sl], None if tgt is None else tgt[sl])
            if how == "homotopy":
                path = homotopy.follow_path(params, self.step_fn, problems, eta=o.eta, adaptive=o.adaptive, tau=self.tau,
                                            schedule=o.schedule, margin=o.margin, path_tol=o.path_tol,
                                            inner_iter=o.inner_iter, gap_tol=o.gap_tol, xtol=o.xtol, max_iter=o.max_iter)
                final, steps_out[sl] = path.final, path.n_steps
            else:
                if starts is None:
                    self.solved_from_x[idx[sl]] = True
                state = sqp.initial_state(problems, params.n_classes, None if starts is None else starts[sl])
                final = sqp.solve_final(params, self.step_fn, problems, state, margin=o.margin, gap_tol=o.gap_tol,
                                        xtol=o.xtol, max_iter=o.max_iter, watchdog=params.activation == "prelu")
            x_out[sl], extra = final.x, 0
            if restore:
                x_out[sl], extra = rescue.restore_stuck(params, problems, final, margin=o.margin, gap_tol=o.gap_tol,
                                                        watchdog=params.activation == "prelu")
            jac_out[sl] = final.n_jac + extra
        return x_out, jac_out, steps_out

    def judge(self, idx, x_hat, tgt=None) -> dict:
        """:func:`flip_evidence` of the points ``x_hat`` for problems ``idx``."""
        rows = self.inputs[idx]
        return flip_evidence(self.params, self.x[rows], x_hat, self.src[rows], self.tgt[idx] if tgt is None else tgt,
                             lower=self.lo[rows], upper=self.hi[rows], feature_weights=self.w, margin=self.opts.margin)


class _Answers:
    """The current answer of every problem with its evidence; better answers replace it."""

    def __init__(self, x, ev, n_jac, n_starts, batch: _Batch):
        self.x, self.ev, self.n_jac, self.n_starts, self.batch = x, ev, n_jac, n_starts, batch

    def status(self, ev=None) -> np.ndarray:
        ev = self.ev if ev is None else ev
        return status_from_evidence(ev, gap_tol=self.batch.opts.gap_tol, opt_tol=self.batch.opts.opt_tol)

    def ok(self, ev=None) -> np.ndarray:
        return self.status(ev) <= 1

    def adopt(self, idx, x_new, ev_new, *, tgt=None, closer_only: bool = True, slack: float = 0.0):
        """Keep the new answers of ``idx`` (for targets ``tgt``) that are flip points where the
        current ones are not, or closer ones; returns which current and new ones are flip points
        and which were kept.  With ``slack``, a first-order optimal new point (status 0) also
        replaces a status-1 answer that is closer by at most ``slack`` of its distance.  Every new
        flip point becomes a witness of its target class."""
        now, new = self.status()[idx], self.status(ev_new)
        ok_now, ok_new = now <= 1, new <= 1
        d_now, d_new = self.ev["distance"][idx], ev_new["distance"]
        better = ok_new & (~ok_now | (d_new < d_now))
        better |= (slack > 0) & (new == 0) & (now == 1) & (d_new <= d_now * (1.0 + slack))
        if not closer_only:  # every current answer of idx failed: take the new ones as they are
            better = np.ones_like(ok_new)
        self.x[idx[better]] = x_new[better]
        for key in self.ev:
            self.ev[key][idx[better]] = ev_new[key][better]
        if tgt is not None:
            self.batch.tgt[idx[better]] = np.asarray(tgt)[better]
        self.batch.found.append(rescue.across(x_new[ok_new], self.batch.x[self.batch.inputs[idx[ok_new]]]))
        return ok_now, ok_new, better

    def try_starts(self, idx, starts, *, slack: float = 0.0):
        """F from ``starts`` for problems ``idx``; closer flip points replace the answers (and,
        with ``slack``, optimal ones a little farther: :meth:`adopt`)."""
        x_s, jac_s, _ = self.batch.solve(idx, "direct", starts)
        np.add.at(self.n_jac, idx, jac_s)
        np.add.at(self.n_starts, idx, 1)
        return self.adopt(idx, x_s, self.batch.judge(idx, x_s), slack=slack)


def _polish(answers: _Answers, everything: np.ndarray) -> None:
    """F again from each answer that is feasible but not first-order optimal (status 1), with a
    fresh penalty, curvature and trust radius: a stalled penalty no longer holds it back.

    A first-order optimal result (status 0) replaces the answer unless it is farther by more than
    ``sqp.KEEP_LAST`` of the distance, the rule F applies to its own last iterate: a status-1
    answer on the near side of the boundary, within the gap tolerance, can be closer by a hair
    (on chapter 3's network, a few parts per million) than the optimal point next to it.  Any
    closer flip point replaces the answer, as everywhere else.
    """
    again = everything[answers.status() == 1]
    if again.size:
        answers.try_starts(again, answers.x[again].copy(), slack=sqp.KEEP_LAST)
