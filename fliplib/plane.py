"""An exhaustive reference for closest flip points of networks with two inputs.

For a network with two inputs the boundary set of eqs. 1-5, the points where ``z_i = z_j`` and
classes ``i`` and ``j`` lead (``z_i = z_j > z_k`` for every other ``k``), is a set of curves in
the plane, and it can be searched exhaustively: a dense grid of the box finds every crossing of
``z_i = z_j``, the crossings are traced as polylines (marching squares, by ``contourpy``, which
Matplotlib installs), the polylines are cut where another class takes the lead, and every local
minimum of the distance from ``x`` along them is polished by SciPy's SLSQP on the NumPy float64
forward pass of :mod:`fliplib.baselines`.  The closest of the polished local minima is the
closest flip point.  Nothing here uses the library's own solver, so the two can be compared
(``benchmarks/bench_global.py``, chapter 2's section "Is it the closest?").

- :func:`trace_boundaries`: the boundary curves of one network in one box (independent of the
  input, so one tracing serves every input and target);
- :func:`exhaustive_flip_points`: every locally closest flip point of one input, and the closest.

How fine the grid is
--------------------
A crossing of ``z_i = z_j`` is found when it separates two grid nodes of opposite sign of
``g = z_i - z_j``.  What a grid can miss is a piece of the curve that lies inside one cell, or
that crosses a cell edge twice: an island of class ``j`` smaller than a cell, or a thin tongue.
Near such a piece ``g`` is close to zero at the surrounding nodes compared with its slope (a
small island is the top of a smooth bump that just pokes through zero).  The tracing therefore
works on two levels:

1. a coarse grid of ``resolution`` cells per side (default 512), evaluated in chunks;
2. every coarse cell where a crossing may hide is refined ``refine`` times per side (default 8,
   so 4,096 cells per side where the boundary is): cells where ``g`` changes sign, and cells
   where the smallest ``|g|`` at the four corners is below the local slope times the cell width
   (the slope estimated by finite differences over the cell and its eight neighbours), in both
   cases only where ``i`` and ``j`` can lead (by the same test on ``min(z_i, z_j) - max_k z_k``).

The curves are traced on the fine grid only, and their vertices are evaluated exactly (not
interpolated) to cut them where a third class leads.  The test of step 2 is a heuristic: a
feature that is smaller than a fine cell and leaves no trace in the coarse values (a spike of
``g`` narrower than a coarse cell, surrounded by flat values) can be missed.  A rigorous bound
through :func:`fliplib.lipschitz_bound` is of no use here: for the sharp deep networks of the
benchmarks it is far too large to ask for a grid of any practical size.  What the benchmark
checks instead is how many answers change on a grid twice as fine at both levels
(``benchmarks/bench_global.py --check-resolution``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.optimize import minimize

from ._checks import positive_int
from .baselines import numpy_logit_jacobian, numpy_logits
from .params import NetworkParams, network_params

__all__ = [
    "GLOBAL_TOL",
    "PLANE_NETWORKS",
    "PlaneBoundaries",
    "PlaneFlipPoints",
    "PlaneProblem",
    "compare_with_reference",
    "exhaustive_flip_points",
    "kkt_residual",
    "plane_problems",
    "trace_boundaries",
    "verdict",
]


@dataclass
class PlaneBoundaries:
    """The boundary set of one network with two inputs, traced in one box.

    Attributes
    ----------
    lower : ndarray, shape (2,)
        Lower corner of the box (the search window).
    upper : ndarray, shape (2,)
        Upper corner of the box.
    resolution : int
        Cells per side of the coarse grid.
    refine : int
        Subdivisions per side of each refined coarse cell.
    spacing : ndarray, shape (2,)
        Width of a fine cell in each coordinate (the resolution of the traced curves).
    curves : dict
        ``curves[(i, j)]`` for ``i < j``: list of polylines ``(m, 2)`` on which ``z_i = z_j`` and
        ``i`` and ``j`` lead (their end points are triple points, on the box's edge, or where a
        closed curve starts).
    closed : dict
        ``closed[(i, j)]``: for each polyline, whether it is a closed loop.
    n_classes : int
    n_refined_cells : int
        Coarse cells that were refined (over all pairs of classes).
    n_evaluations : int
        Network evaluations spent on the grids.
    margin : float
        The lead asked of ``i`` and ``j`` over the other classes.
    """

    lower: np.ndarray
    upper: np.ndarray
    resolution: int
    refine: int
    spacing: np.ndarray
    curves: dict
    closed: dict
    n_classes: int
    n_refined_cells: int
    n_evaluations: int
    margin: float = 0.0


@dataclass
class PlaneFlipPoints:
    """Every locally closest flip point of one input, found by exhaustive search in the plane.

    Attributes
    ----------
    x : ndarray, shape (2,)
        The input.
    source : int
        Class ``i``.
    points : ndarray, shape (m, 2)
        The polished local minima of the distance from ``x`` on the boundary set, nearest first.
    distances : ndarray, shape (m,)
        Their 2-norm distances from ``x``.
    targets : ndarray of int, shape (m,)
        The class ``j`` of each (``z_i = z_j`` there).
    stationary : ndarray of bool, shape (m,)
        Whether the point's relative KKT residual (:func:`kkt_residual`) is below ``kkt_tol``.
        On ReLU networks a local minimum often sits at a kink of the boundary, where the
        gradients are not defined and this test does not apply; such points are kept (they
        are feasible, and as close as the traced polyline's local minimum or closer).
    point : ndarray, shape (2,)
        The closest flip point (NaN when none exists).
    distance : float
        Its distance (``inf`` when none exists).
    target : int
        Its class ``j`` (-1 when none exists).
    exists : bool
        Whether the boundary set with the asked targets meets the box.
    certified : bool
        Whether no closer flip point can lie outside the search window: always True with a
        bounded problem; without bounds, True when the ball of radius ``distance`` around ``x``
        lies inside the window.
    grid_distance : float
        The smallest distance from ``x`` to the traced polylines, before polishing.
    resolution : int
        Cells per side of the finest grid (``resolution * refine``).
    spacing : ndarray, shape (2,)
        Width of a fine cell.
    n_candidates : int
        Local minima of the distance along the polylines that were polished.
    """

    x: np.ndarray
    source: int
    points: np.ndarray
    distances: np.ndarray
    targets: np.ndarray
    stationary: np.ndarray
    point: np.ndarray
    distance: float
    target: int
    exists: bool
    certified: bool
    grid_distance: float
    resolution: int
    spacing: np.ndarray
    n_candidates: int = 0
    bounded: bool = True
    lower: np.ndarray = field(default=None, repr=False)
    upper: np.ndarray = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------

def _plane(model, lower, upper) -> tuple[NetworkParams, np.ndarray, np.ndarray]:
    """The parameters of a network with two inputs, and the box ``lower <= x <= upper``."""
    params = network_params(model)
    if params.n_features != 2:
        raise ValueError(f"the plane reference needs a network with 2 inputs, got {params.n_features}")
    lo = np.broadcast_to(np.asarray(lower, dtype=float), (2,)).copy()
    hi = np.broadcast_to(np.asarray(upper, dtype=float), (2,)).copy()
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"lower and upper must be finite, got {lower!r} and {upper!r}")
    if np.any(hi <= lo):
        raise ValueError(f"upper must exceed lower in both coordinates, got lower={lo} and upper={hi}")
    return params, lo, hi


def _logits(params, points: np.ndarray, chunk: int) -> np.ndarray:
    """Logits ``(n, C)`` of ``points`` ``(n, 2)`` in chunks of ``chunk`` points."""
    out = np.empty((len(points), params.n_classes))
    for start in range(0, len(points), chunk):
        out[start:start + chunk] = numpy_logits(params, points[start:start + chunk])
    return out


def _lead(z: np.ndarray, i: int, j: int) -> np.ndarray:
    """``min(z_i, z_j) - max_{k != i, j} z_k`` (+inf with two classes): positive where i and j lead."""
    others = np.delete(z, [i, j], axis=-1)
    pair = np.minimum(z[..., i], z[..., j])
    if others.shape[-1] == 0:
        return np.full(pair.shape, np.inf)
    return pair - others.max(axis=-1)


def _slopes(v: np.ndarray) -> np.ndarray:
    """Per cell of a node grid ``(ny + 1, nx + 1)``: the largest finite-difference slope (change
    per cell width) over the edges of the cell and of its eight neighbours."""
    with np.errstate(invalid="ignore", over="ignore"):
        dx = np.abs(np.diff(v, axis=1))
        dy = np.abs(np.diff(v, axis=0))
        slope = np.maximum(np.maximum(dx[:-1], dx[1:]), np.maximum(dy[:, :-1], dy[:, 1:]))
    return maximum_filter(np.nan_to_num(slope, nan=0.0, posinf=1e300), size=3, mode="nearest")


def _corners(v: np.ndarray) -> np.ndarray:
    return np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]])


def _may_vanish(values: np.ndarray) -> np.ndarray:
    """Cells of a node grid where ``values`` may vanish: its corners differ in sign, or the
    smallest ``|value|`` at a corner is at most the local slope (:func:`_slopes`) times a cell's
    diagonal, ``sqrt(2)`` cell widths (every point of a cell lies within half a diagonal of a
    corner; the factor 2 leaves room for the slope to grow inside the cell)."""
    corners = _corners(values)
    sign_change = (corners.min(axis=0) <= 0) & (corners.max(axis=0) >= 0)
    return sign_change | (np.abs(corners).min(axis=0) <= math.sqrt(2.0) * _slopes(values))


def _may_be_positive(values: np.ndarray) -> np.ndarray:
    """Cells where ``values`` may be positive somewhere (same slope test as :func:`_may_vanish`)."""
    return _corners(values).max(axis=0) >= -math.sqrt(2.0) * _slopes(values)


def _polylines(xs: np.ndarray, ys: np.ndarray, g: np.ndarray) -> list[np.ndarray]:
    """Zero contour of ``g`` (``(len(ys), len(xs))``, NaN where not evaluated) as polylines."""
    import contourpy

    if not np.any(np.isfinite(g)):
        return []
    z = np.ma.masked_invalid(g)
    gen = contourpy.contour_generator(xs, ys, z, line_type=contourpy.LineType.Separate,
                                      name="serial", corner_mask=False)
    return [np.asarray(line, dtype=float) for line in gen.lines(0.0) if len(line) >= 2]


def _cut_by_lead(params, line: np.ndarray, i: int, j: int, margin: float, chunk: int) -> list[np.ndarray]:
    """The parts of a polyline of ``z_i = z_j`` where ``i`` and ``j`` lead (vertices evaluated
    exactly; the cut points interpolated linearly between a vertex inside and one outside)."""
    z = _logits(params, line, chunk)
    lead = _lead(z, i, j) - margin
    inside = lead >= 0
    if inside.all():
        return [line]
    pieces, current = [], []
    for k in range(len(line)):
        if inside[k]:
            if not current and k > 0:  # entering: start at the cut point
                t = lead[k - 1] / (lead[k - 1] - lead[k])
                current.append(line[k - 1] + t * (line[k] - line[k - 1]))
            current.append(line[k])
        elif current:  # leaving: end at the cut point
            t = lead[k - 1] / (lead[k - 1] - lead[k])
            current.append(line[k - 1] + t * (line[k] - line[k - 1]))
            pieces.append(np.array(current))
            current = []
    if current:
        pieces.append(np.array(current))
    return [p for p in pieces if len(p) >= 2]


def trace_boundaries(model, lower, upper, *, resolution: int = 512, refine: int = 8, margin: float = 0.0,
                     chunk: int = 65536) -> PlaneBoundaries:
    """Trace the boundary set of a network with two inputs in the box ``[lower, upper]``.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        An erf or PReLU network with two inputs.
    lower, upper : float or array of shape (2,)
        The box (or, for an unbounded problem, the search window).
    resolution : int
        Cells per side of the coarse grid.
    refine : int
        Subdivisions per side of every coarse cell where a crossing may hide (see the module
        docstring); the curves are traced on this finer grid.
    margin : float
        Lead that ``i`` and ``j`` must keep over every other class: ``z_i = z_j >= z_k +
        margin`` (0: the boundary set of eqs. 1-5; ``fliplib.closest_flip_points`` asks for its
        own ``margin``, 1e-3 by default, so a fair comparison traces with the same).
    chunk : int
        Points per NumPy forward pass.

    Returns
    -------
    PlaneBoundaries
    """
    params, lo, hi = _plane(model, lower, upper)
    resolution, refine, chunk = (positive_int(name, value) for name, value in
                                 (("resolution", resolution), ("refine", refine), ("chunk", chunk)))
    n_cls = params.n_classes
    xs = np.linspace(lo[0], hi[0], resolution + 1)
    ys = np.linspace(lo[1], hi[1], resolution + 1)
    gx, gy = np.meshgrid(xs, ys)
    z = _logits(params, np.column_stack([gx.ravel(), gy.ravel()]), chunk).reshape(resolution + 1, resolution + 1, n_cls)
    n_eval = z.shape[0] * z.shape[1]
    pairs = [(i, j) for i in range(n_cls) for j in range(i + 1, n_cls)]
    flagged = {}
    for i, j in pairs:
        cells = _may_vanish(z[..., i] - z[..., j])
        if n_cls > 2:
            cells &= _may_be_positive(_lead(z, i, j) - margin)
        flagged[(i, j)] = cells
    union = np.zeros((resolution, resolution), dtype=bool)
    for cells in flagged.values():
        union |= cells
    # Fine nodes of the refined cells, stored in a sparse block array (cell, ry, rx, C).
    cy, cx = np.nonzero(union)
    fx = np.linspace(lo[0], hi[0], resolution * refine + 1)
    fy = np.linspace(lo[1], hi[1], resolution * refine + 1)
    sub = np.arange(refine + 1)
    iy = cy[:, None] * refine + sub[None, :]  # (cells, refine + 1)
    ix = cx[:, None] * refine + sub[None, :]
    # Neighbouring cells share their edge nodes: each node is evaluated once.
    n_side = resolution * refine + 1
    keys = (iy[:, :, None] * n_side + ix[:, None, :]).ravel()
    unique, inverse = np.unique(keys, return_inverse=True)
    pts = np.column_stack([fx[unique % n_side], fy[unique // n_side]])
    zf = _logits(params, pts, chunk)[inverse].reshape(len(cy), refine + 1, refine + 1, n_cls)
    n_eval += len(pts)
    curves, closed = {}, {}
    for i, j in pairs:
        cells = flagged[(i, j)]
        lines = []
        if cells.any():
            keep = cells[cy, cx]
            # The fine grid of this pair, NaN outside the refined cells; only the bounding box of
            # the refined cells is allocated.
            y0, y1 = cy[keep].min() * refine, (cy[keep].max() + 1) * refine + 1
            x0, x1 = cx[keep].min() * refine, (cx[keep].max() + 1) * refine + 1
            g = np.full((y1 - y0, x1 - x0), np.nan)
            vals = zf[keep][..., i] - zf[keep][..., j]
            rows = (iy[keep] - y0)[:, :, None]
            cols = (ix[keep] - x0)[:, None, :]
            g[np.broadcast_to(rows, vals.shape), np.broadcast_to(cols, vals.shape)] = vals
            for line in _polylines(fx[x0:x1], fy[y0:y1], g):
                lines.extend(_cut_by_lead(params, line, i, j, margin, chunk) if n_cls > 2 else [line])
        curves[(i, j)] = lines
        closed[(i, j)] = [len(p) > 3 and np.allclose(p[0], p[-1], rtol=0, atol=1e-12) for p in lines]
    return PlaneBoundaries(lower=lo, upper=hi, resolution=int(resolution), refine=int(refine),
                           spacing=(hi - lo) / (resolution * refine), curves=curves, closed=closed,
                           n_classes=n_cls, n_refined_cells=int(union.sum()), n_evaluations=int(n_eval),
                           margin=float(margin))


# --------------------------------------------------------------------------------------------
# Local minima of the distance, polished
# --------------------------------------------------------------------------------------------

def _segment_candidates(x: np.ndarray, lines: list, closed: list) -> tuple[np.ndarray, np.ndarray]:
    """Nearest points to ``x`` on the segments where the distance along a polyline has a local
    minimum (a segment no farther than its neighbours; end segments of open polylines have one
    neighbour), and their distances."""
    if not lines:
        return np.zeros((0, 2)), np.zeros(0)
    a = np.concatenate([p[:-1] for p in lines])
    b = np.concatenate([p[1:] for p in lines])
    sizes = np.array([len(p) - 1 for p in lines])
    ab = b - a
    length2 = np.einsum("sd,sd->s", ab, ab)
    t = np.clip(np.einsum("sd,sd->s", x - a, ab) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    near = a + t[:, None] * ab
    d = np.linalg.norm(near - x, axis=1)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    prev = np.concatenate([[np.inf], d[:-1]])
    nxt = np.concatenate([d[1:], [np.inf]])
    is_closed = np.asarray(closed, dtype=bool)
    prev[starts] = np.where(is_closed, d[ends - 1], np.inf)
    nxt[ends - 1] = np.where(is_closed, d[starts], np.inf)
    # Strict on one side, so that two segments sharing their nearest vertex give one candidate.
    local = (d < prev) & (d <= nxt)
    return near[local], d[local]


def kkt_residual(model, x, point, source: int, target: int, *, lower=None, upper=None,
                 margin: float = 0.0, active_tol: float = 1e-6) -> float:
    """Relative first-order optimality residual of a flip point (eqs. 1-5, 2-norm).

    The smallest ``||(point - x) - A^T lam||`` over multipliers of the active constraints (free
    for ``z_i = z_j``, nonnegative for the other classes within ``active_tol`` of ``z_i`` and for
    the bounds that hold with equality), divided by ``||point - x||``: zero at a KKT point.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x, point : array_like, shape (d,)
    source, target : int
    lower, upper : float or array, optional
        The bounds, when the problem has them.
    margin : float
        The constraints on the other classes are ``z_i - z_k >= margin``.
    active_tol : float
        A class ``k`` is active when ``z_i - z_k - margin <= active_tol * max(1, |z_i|)``.

    Returns
    -------
    float
    """
    from scipy.optimize import lsq_linear

    params = network_params(model)
    x = np.asarray(x, dtype=float)
    point = np.asarray(point, dtype=float)
    step = point - x
    norm = np.linalg.norm(step)
    if norm == 0:
        return 0.0
    z, jac = numpy_logit_jacobian(params, point)
    scale = max(1.0, abs(z[source]))
    rows, lo_mult = [jac[source] - jac[target]], [-np.inf]
    for k in range(len(z)):
        if k not in (source, target) and z[source] - z[k] - margin <= active_tol * scale:
            rows.append(jac[source] - jac[k])
            lo_mult.append(0.0)
    d = len(x)
    for bound, sign in ((lower, 1.0), (upper, -1.0)):
        if bound is None:
            continue
        bnd = np.broadcast_to(np.asarray(bound, dtype=float), (d,))
        for f in np.flatnonzero(np.abs(point - bnd) <= 1e-12 * np.maximum(1.0, np.abs(bnd))):
            rows.append(sign * np.eye(d)[f])
            lo_mult.append(0.0)
    a = np.array(rows).T  # (d, m)
    fit = lsq_linear(a, step, bounds=(np.array(lo_mult), np.full(len(lo_mult), np.inf)))
    return float(np.linalg.norm(a @ fit.x - step) / norm)


def _polish(params, x, i, j, start, lo, hi, bounded: bool, slack: float, margin: float):
    """SLSQP on ``min ||v - x||^2 s.t. z_i = z_j, z_i >= z_k, (bounds)`` from ``start``, then a
    few Newton steps on ``z_i - z_j`` along its gradient (within the bounds) to bring the gap to
    rounding level.  Returns the point and whether it is a flip point to 1e-8."""
    n_cls = params.n_classes
    others = [k for k in range(n_cls) if k not in (i, j)]
    cache = {}

    def evaluate(v):
        key = v.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = numpy_logit_jacobian(params, v)
        return cache[key]

    constraints = [{"type": "eq", "fun": lambda v: np.array([evaluate(v)[0][i] - evaluate(v)[0][j]]),
                    "jac": lambda v: (evaluate(v)[1][i] - evaluate(v)[1][j])[None, :]}]
    if others:
        constraints.append({"type": "ineq", "fun": lambda v: evaluate(v)[0][i] - evaluate(v)[0][others] - margin,
                            "jac": lambda v: evaluate(v)[1][i][None, :] - evaluate(v)[1][others]})
    bounds = list(zip(lo, hi)) if bounded else None
    res = minimize(lambda v: 0.5 * np.sum((v - x) ** 2), start, jac=lambda v: v - x, method="SLSQP",
                   constraints=constraints, bounds=bounds, options={"maxiter": 100, "ftol": 1e-13})
    v = _newton(params, np.clip(res.x, lo, hi) if bounded else res.x.copy(), i, j, lo, hi, bounded)
    if (not _is_flip_point(params, v, i, j, lo, hi, bounded, margin)
            or np.linalg.norm(v - x) > np.linalg.norm(start - x) + slack):
        # SLSQP wandered off (at a kink of a ReLU network, say): bring the grid point itself
        # onto z_i = z_j; it lies within a fine cell of the polyline's local minimum.
        v = _newton(params, np.asarray(start, dtype=float), i, j, lo, hi, bounded, n_steps=8)
    return v, _is_flip_point(params, v, i, j, lo, hi, bounded, margin)


def _newton(params, v, i, j, lo, hi, bounded: bool, n_steps: int = 4) -> np.ndarray:
    """Newton steps on ``z_i - z_j`` along its gradient (the free coordinates only when bounded)."""
    for _ in range(n_steps):
        z, jac = numpy_logit_jacobian(params, v)
        gap = z[i] - z[j]
        if not np.isfinite(gap) or abs(gap) <= 1e-13 * max(1.0, abs(z[i])):
            break
        grad = jac[i] - jac[j]
        if bounded:
            grad = np.where(((v <= lo) & (grad * gap > 0)) | ((v >= hi) & (grad * gap < 0)), 0.0, grad)
        if not np.any(grad):
            break
        v = v - gap * grad / np.dot(grad, grad)
        if bounded:
            v = np.clip(v, lo, hi)
    return v


def _is_flip_point(params, v, i, j, lo, hi, bounded: bool, margin: float, tol: float = 1e-8) -> bool:
    z = numpy_logits(params, v)[0]
    scale = tol * max(1.0, abs(z[i]))
    others = np.delete(z, [i, j])
    ok = np.all(np.isfinite(z)) and abs(z[i] - z[j]) <= scale and np.all(z[i] - others - margin >= -scale)
    if bounded:
        ok = ok and np.all(v >= lo) and np.all(v <= hi)
    return bool(ok)


def exhaustive_flip_points(model, x, *, source=None, target, lower, upper, bounded: bool = True,
                           resolution: int = 512, refine: int = 8, margin: float = 0.0,
                           boundaries: PlaneBoundaries | None = None, kkt_tol: float = 1e-4) -> PlaneFlipPoints:
    """Every locally closest flip point of one input of a network with two inputs, exhaustively.

    The boundary curves of ``z_i = z_j`` where ``i`` and ``j`` lead are traced on a grid of the
    box (:func:`trace_boundaries`; the module docstring explains the resolution); every local
    minimum of the distance from ``x`` along them is polished by SLSQP (``min ||v - x||^2``
    subject to ``z_i = z_j``, ``z_i >= z_k`` for the other classes and the bounds) on the NumPy
    float64 forward pass, followed by Newton steps on ``z_i - z_j``.  Where SLSQP fails or ends
    farther than the grid's point by more than two fine cells (at a kink of a ReLU network, say),
    the grid's point brought onto ``z_i = z_j`` by Newton steps is taken instead.  A point is kept
    when it satisfies every constraint to 1e-8 (relative to ``max(1, |z_i|)``), and marked
    stationary when its relative KKT residual (:func:`kkt_residual`) is below ``kkt_tol``;
    duplicates are merged.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        An erf or PReLU network with two inputs.
    x : array_like, shape (2,)
        The input.
    source : int, optional
        Class ``i``; default the predicted class of ``x``.
    target : int or "any"
        Class ``j``, or ``"any"``: the nearest over every other class.
    lower, upper : float or array of shape (2,)
        The box: the bounds of eq. 5 when ``bounded``, otherwise only the search window.
    bounded : bool
        Whether the box constrains the flip point.  Without bounds a flip point outside the
        window is not seen; :attr:`PlaneFlipPoints.certified` says whether that matters.
    resolution, refine, margin : int, int, float
        Grid and margin of :func:`trace_boundaries` (ignored when ``boundaries`` is given, whose
        own margin then applies): with ``margin > 0`` the other classes must stay ``margin``
        below ``z_i = z_j``, as ``fliplib.closest_flip_points`` asks.
    boundaries : PlaneBoundaries, optional
        The traced curves of this network and box, to share one tracing between inputs.
    kkt_tol : float
        Largest relative KKT residual of a local minimum marked stationary.

    Returns
    -------
    PlaneFlipPoints
    """
    params, lo, hi = _plane(model, lower, upper)
    x = np.asarray(x, dtype=float)
    if x.shape != (2,) or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be one finite point of shape (2,), got {np.shape(x)}")
    if np.any(x < lo) or np.any(x > hi):
        raise ValueError(f"x = {x} lies outside the box [{lo}, {hi}]")
    n_cls = params.n_classes
    z0 = numpy_logits(params, x)[0]
    i = int(np.argmax(z0)) if source is None else source
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n_cls:
        raise ValueError(f"source must be a class in [0, {n_cls}), got {source!r}")
    i = int(i)
    if isinstance(target, str):
        if target != "any":
            raise ValueError(f"target must be a class or 'any', got {target!r}")
        targets = [k for k in range(n_cls) if k != i]
    else:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < n_cls:
            raise ValueError(f"target must be a class in [0, {n_cls}) or 'any', got {target!r}")
        if int(target) == i:
            raise ValueError(f"target must differ from the source class {i}, got {target!r}")
        targets = [int(target)]
    if boundaries is None:
        boundaries = trace_boundaries(params, lo, hi, resolution=resolution, refine=refine, margin=margin)
    elif not (np.array_equal(boundaries.lower, lo) and np.array_equal(boundaries.upper, hi)
              and boundaries.n_classes == n_cls):
        raise ValueError("boundaries were traced for another box or network")
    margin = boundaries.margin
    points, dists, tgts, flags, grid_best, n_cand = [], [], [], [], np.inf, 0
    tol = 1e-7 * max(1.0, float(np.max(np.abs(hi - lo))))
    slack = 2 * float(np.linalg.norm(boundaries.spacing))
    for j in targets:
        key = (min(i, j), max(i, j))
        starts, grid_d = _segment_candidates(x, boundaries.curves[key], boundaries.closed[key])
        n_cand += len(starts)
        if len(grid_d):
            grid_best = min(grid_best, float(grid_d.min()))
        for start in starts[np.argsort(grid_d)]:
            v, ok = _polish(params, x, i, j, start, lo, hi, bounded, slack, margin)
            if not ok or any(t == j and np.linalg.norm(v - p) <= tol for p, t in zip(points, tgts)):
                continue
            stationary = kkt_residual(params, x, v, i, j, lower=lo if bounded else None,
                                      upper=hi if bounded else None, margin=margin) <= kkt_tol
            points.append(v)
            dists.append(float(np.linalg.norm(v - x)))
            tgts.append(j)
            flags.append(stationary)
    order = np.argsort(dists, kind="stable")
    points = np.array(points).reshape(-1, 2)[order]
    dists = np.array(dists)[order]
    tgts = np.array(tgts, dtype=int)[order]
    flags = np.array(flags, dtype=bool)[order]
    exists = len(dists) > 0
    distance = float(dists[0]) if exists else math.inf
    if bounded:
        certified = True
    else:
        certified = bool(exists and distance <= float(np.min(np.concatenate([x - lo, hi - x]))))
    return PlaneFlipPoints(
        x=x, source=i, points=points, distances=dists, targets=tgts, stationary=flags,
        point=points[0] if exists else np.full(2, np.nan), distance=distance,
        target=int(tgts[0]) if exists else -1, exists=exists, certified=certified,
        grid_distance=grid_best, resolution=boundaries.resolution * boundaries.refine,
        spacing=boundaries.spacing, n_candidates=int(n_cand), bounded=bounded, lower=lo, upper=hi)


# --------------------------------------------------------------------------------------------
# Random problems for benchmarks and tests
# --------------------------------------------------------------------------------------------

#: Random networks with two inputs: (layer sizes, erf width sigma, bounded).  Depths 2 to 8,
#: widths 12 to 64, 3 to 5 classes, sharp (0.3) and smooth (2) widths, with and without a box.
#: PReLU networks (alpha = 0, plain ReLU) use the same shapes; sigma is then unused.
PLANE_NETWORKS: list[tuple[list[int], float, bool]] = [
    ([2, 12, 12, 3], 2.0, True),
    ([2, 24, 24, 24, 4], 0.3, True),
    ([2, 32, 32, 32, 32, 5], 0.3, False),
    ([2, 16, 16, 16, 16, 16, 16, 4], 2.0, False),
    ([2, 64, 64, 5], 0.3, True),
    ([2] + [48] * 8 + [3], 0.3, True),
    ([2, 20, 20, 20, 20, 20, 5], 2.0, True),
    ([2] + [12] * 8 + [4], 2.0, False),
]


@dataclass
class PlaneProblem:
    """One random network with two inputs, its inputs and its box.

    Attributes
    ----------
    name : str
        ``"erf 2-24-24-24-4 s=0.3 box"`` and the like.
    kind : {"erf", "prelu"}
    model : keras.Model
    x : ndarray, shape (n, 2)
        Inputs drawn uniformly in the box.
    lower : ndarray, shape (2,)
        Lower corner of the box: the bounds of the problem when ``bounded``, otherwise where the
        inputs are drawn.
    upper : ndarray, shape (2,)
        Upper corner of the box.
    bounded : bool
        Whether the flip points must lie in the box (``lower``/``upper`` passed to the solver).
    window : tuple of ndarray
        The search window of the reference: the box when bounded, else the box widened by
        ``margin`` on every side.
    seed : int
    """

    name: str
    kind: str
    model: object
    x: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    bounded: bool
    window: tuple
    seed: int


def plane_problems(kind: str = "erf", *, n_inputs: int = 8, networks=None, seed: int = 0,
                   half_width: float = 2.0, margin: float = 4.0, bias_scale: float = 0.5) -> list[PlaneProblem]:
    """Random networks with two inputs, random biases and random inputs, for the reference.

    Parameters
    ----------
    kind : {"erf", "prelu"}
        ``fliplib.erf_network(sizes, sigma=s, seed=...)`` or ``fliplib.prelu_network(sizes,
        alpha=0.0, seed=...)``.
    n_inputs : int
        Inputs per network, drawn uniformly in the box ``[-half_width, half_width]^2``.
    networks : list of (sizes, sigma, bounded), optional
        Default :data:`PLANE_NETWORKS`.  Pass a slice for a smaller set.
    seed : int
        Network ``k`` of the list gets weights seed ``seed + k`` and its inputs
        ``numpy.random.default_rng(seed + k)``, which first draws its biases.
    half_width : float
        Half the side of the box.
    margin : float
        How far the search window of an unbounded problem extends beyond the box.
    bias_scale : float
        Standard deviation of the random biases of the hidden layers.  The networks' own biases
        start at zero, and then every boundary passes through the origin (an erf network with
        zero biases is an odd function, a ReLU network positively homogeneous, so all logits
        vanish at 0).  The output biases are set to minus the mean logits over the box (4,096
        uniform points), so that no class owns the whole box, as it often does at random.

    Returns
    -------
    list of PlaneProblem
    """
    from .model import erf_network, prelu_network

    if kind not in ("erf", "prelu"):
        raise ValueError(f"kind must be 'erf' or 'prelu', got {kind!r}")
    n_inputs = positive_int("n_inputs", n_inputs)
    out = []
    for k, (sizes, sigma, bounded) in enumerate(PLANE_NETWORKS if networks is None else networks):
        s = seed + k
        if kind == "erf":
            model = erf_network(sizes, sigma=sigma, seed=s)
            name = f"erf {'-'.join(map(str, sizes))} s={sigma:g}"
        else:
            model = prelu_network(sizes, alpha=0.0, seed=s)
            name = f"relu {'-'.join(map(str, sizes))}"
        rng = np.random.default_rng(s)
        for layer in model.layers[:-1]:  # the hidden layers
            if hasattr(layer, "bias") and layer.bias is not None:
                layer.bias.assign(rng.normal(0.0, bias_scale, size=layer.bias.shape).astype("float32"))
        lo, hi = np.full(2, -half_width), np.full(2, half_width)
        # Centre the logits over the box, so that no class owns the whole box.
        logits = numpy_logits(network_params(model), rng.uniform(lo, hi, size=(4096, 2)))
        model.layers[-1].bias.assign((-logits.mean(axis=0)).astype("float32"))
        x = rng.uniform(lo, hi, size=(n_inputs, 2))
        window = (lo, hi) if bounded else (lo - margin, hi + margin)
        out.append(PlaneProblem(name=f"{name} {'box' if bounded else 'no box'}", kind=kind, model=model, x=x,
                                lower=lo, upper=hi, bounded=bounded, window=window, seed=s))
    return out


# --------------------------------------------------------------------------------------------
# A solver against the reference
# --------------------------------------------------------------------------------------------

#: Within this relative distance of the reference's, a flip point is the global closest.
GLOBAL_TOL = 0.01


def verdict(ref: PlaneFlipPoints, success: bool, distance: float, point, *, tol: float = GLOBAL_TOL) -> str:
    """How a solver's answer to one problem compares with the exhaustive reference.

    Returns
    -------
    str
        ``"global"``: a flip point within ``tol`` (relative) of the reference's distance, or
        closer; ``"farther"``: a flip point more than ``tol`` farther (a farther local minimum,
        or not a minimum); ``"missed"``: no flip point where one exists.  Problems the
        reference cannot decide: ``"none"`` (no flip point, and the solver found none or one
        outside the window), ``"fliplib only"`` (the solver found one the reference did not see
        inside its window), ``"uncertified"`` (a closer flip point may lie outside the window).
    """
    if ref.exists and ref.certified:
        if not success:
            return "missed"
        return "global" if distance <= ref.distance * (1 + tol) + 1e-12 else "farther"
    if not ref.exists:
        inside = np.all(np.asarray(point) >= ref.lower) and np.all(np.asarray(point) <= ref.upper)
        return "fliplib only" if success and (ref.bounded or inside) else "none"
    return "uncertified"


def compare_with_reference(problems: list[PlaneProblem], solvers: dict, *, resolution: int = 256,
                           refine: int = 8, margin: float = 1e-3, tol: float = GLOBAL_TOL):
    """Every (input, target) problem of every network, solved by each solver and judged against
    the exhaustive reference.

    Parameters
    ----------
    problems : list of PlaneProblem
        From :func:`plane_problems`.
    solvers : dict
        Name -> keyword arguments of ``fliplib.closest_flip_points(model, x, "all", ...)``
        (the box is passed when the problem has one).
    resolution, refine, margin : int, int, float
        The reference's grid (:func:`trace_boundaries`) and the lead it asks of ``i`` and ``j``
        over the other classes (``closest_flip_points``' default margin is 1e-3).
    tol : float
        Relative tolerance of a ``"global"`` answer (:func:`verdict`).

    Returns
    -------
    pandas.DataFrame
        One row per problem and solver: ``network``, ``input``, ``source``, ``target``,
        ``solver``, ``reference`` (the closest distance; ``inf`` when none exists),
        ``local_minima`` (how many the reference found for this target), ``distance``
        (the solver's; NaN when it found no flip point), ``status``, ``ratio`` (distance over
        reference), ``verdict`` and ``point`` (the solver's answer, an array of shape (2,)).
    """
    import pandas as pd

    from .flip import closest_flip_points

    rows = []
    for problem in problems:
        lo, hi = problem.window
        bounds = {"lower": problem.lower, "upper": problem.upper} if problem.bounded else {}
        results = {name: closest_flip_points(problem.model, problem.x, "all", **bounds, **kwargs)
                   for name, kwargs in solvers.items()}
        boundaries = trace_boundaries(problem.model, lo, hi, resolution=resolution, refine=refine, margin=margin)
        first = next(iter(results.values()))
        for n, x in enumerate(problem.x):
            for j in np.nonzero(first.status[n] != -1)[0]:
                i = int(first.source[n, j])
                ref = exhaustive_flip_points(problem.model, x, source=i, target=int(j), lower=lo, upper=hi,
                                             bounded=problem.bounded, boundaries=boundaries)
                for name, res in results.items():
                    ok = bool(res.success[n, j])
                    d = float(res.distance[n, j]) if ok else np.nan
                    rows.append({"network": problem.name, "input": n, "source": i,
                                 "target": int(j), "solver": name, "reference": ref.distance,
                                 "local_minima": len(ref.distances), "distance": d,
                                 "status": int(res.status[n, j]), "ratio": d / ref.distance if ref.exists else np.nan,
                                 "verdict": verdict(ref, ok, d, res.x[n, j], tol=tol), "point": res.x[n, j]})
    return pd.DataFrame(rows)
