"""Geometry of decision boundaries: lines, crossings, Taylor estimates, connectedness.

The tools of "Investigating decision boundaries of trained neural networks" (Yousefzadeh &
O'Leary), secs. 4-7:

- :func:`scan_segments`: walk segments ``(1 - t) a + t b`` with steps set by a Lipschitz bound
  (sec. 4.1), so that no crossing of the decision boundary is missed, and locate every crossing
  by bisection;
- :func:`segment_outputs`: the softmax output along segments (figs. 2-4, 9-10);
- :func:`taylor_distance`: the first-order estimate of the distance to the boundary of Elsayed
  et al. (2018) and its direction (figs. 5-6, 8);
- :func:`distance_along_direction`: the first crossing along a ray, by the same scan (fig. 7);
  :func:`box_exit_distance`: where the ray leaves a box;
- :func:`angles_between`: angles between directions, in degrees (fig. 8, sec. 7);
- :func:`line_adjacency`, :func:`connectedness`: which pairs of points of a class are joined
  by a segment that stays in the class, and the graph it forms (sec. 6);
- :func:`pgd_l2_attack`: loss-minimising attacks under an l2 budget (sec. 7, Ilyas et al. 2019).

The decision function of a point ``x`` for a source class ``i`` is the *margin*
``g(x) = z_i(x) - z_j(x)`` against one target class ``j``, or ``z_i(x) - max_{k != i} z_k(x)``
against all others (``target=None``); ``z`` are the logits.  A crossing is a zero of ``g``
where it changes sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.csgraph
import tensorflow as tf
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ._checks import as_mask, check_feature_weights, check_points, positive_int
from .jacobian import lipschitz_bound, logit_jacobian
from .params import NetworkParams, bisect_boundary, forward, logit_margin, network_params, numpy_network

__all__ = [
    "margin",
    "margin_gradient",
    "margin_lipschitz",
    "SegmentCrossings",
    "scan_segments",
    "segment_outputs",
    "taylor_distance",
    "distance_along_direction",
    "box_exit_distance",
    "angles_between",
    "line_adjacency",
    "Connectedness",
    "connectedness",
    "pgd_l2_attack",
]


# ------------------------------------------------------------------------------ the margin




def _as_points(params: NetworkParams, x, name: str = "x") -> np.ndarray:
    return check_points(name, x, params.n_features)


def _row_norms(v: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows, without overflow for entries up to the largest float64."""
    scale = np.abs(v).max(axis=1, initial=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = v / scale[:, None]
    return np.where(scale > 0, scale * np.linalg.norm(np.nan_to_num(unit), axis=1), 0.0)


def _classes(params: NetworkParams, value, n: int, name: str, default: np.ndarray | None) -> np.ndarray | None:
    if value is None:
        return default
    arr = np.broadcast_to(np.asarray(value), (n,))
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= params.n_classes):
        raise ValueError(f"{name} must lie in [0, {params.n_classes}), got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def margin(model, x, *, source=None, target=None) -> np.ndarray:
    """The margin ``g(x) = z_i(x) - z_j(x)`` (or ``- max_{k != i} z_k`` without a target).

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n, n_features)
    source : int or array of shape (n,), optional
        Class ``i``; default the predicted class (then ``g >= 0``).
    target : int or array of shape (n,), optional
        Class ``j``; default the best other class.

    Returns
    -------
    ndarray, shape (n,)
    """
    params = network_params(model)
    x = _as_points(params, x)
    logits = numpy_network(params).logits(x)
    src = _classes(params, source, len(x), "source", logits.argmax(axis=1))
    tgt = _classes(params, target, len(x), "target", None)
    return logit_margin(logits, src, tgt)


def margin_lipschitz(model) -> float:
    """A Lipschitz constant of the margin ``g`` in the Euclidean norm, from :func:`fliplib.lipschitz_bound`.

    ``z_i - z_j = (e_i - e_j)^T z`` and ``||e_i - e_j||_2 = sqrt(2)``, so ``sqrt(2) L_2`` bounds the
    gradient norm of every pairwise margin, where ``L_2`` is eq. 15 in the 2-norm; a maximum of
    such functions (``target=None``) has the same constant.
    """
    return math.sqrt(2.0) * lipschitz_bound(model, ord=2)


# ------------------------------------------------------------------------- scanning segments


@dataclass(frozen=True)
class SegmentCrossings:
    """Where the margin changes sign along segments ``(1 - t) a + t b``, ``t`` in ``[0, 1]``.

    Attributes
    ----------
    t : list of ndarray
        Per segment, the crossings (ascending ``t``), each located by bisection to ``xtol``.
    n_crossings : ndarray of int, shape (n,)
    length : ndarray, shape (n,)
        ``||b - a||``.
    n_evaluations : ndarray of int, shape (n,)
        Margin evaluations spent on the scan (bisection not included).
    missed_depth : ndarray, shape (n,)
        Certificate of the scan.  Between two samples ``s`` apart with margins ``g0``, ``g1`` of
        one sign, a pair of crossings needs the margin to dip by ``(L s - |g0| - |g1|) / 2`` past
        zero.  This is the largest such dip over the segment: 0 when every step was short enough
        for the Lipschitz bound to exclude a crossing (no crossing missed), positive only where
        the step hit the floor ``resolution``.
    complete : ndarray of bool, shape (n,)
        False if the scan stopped at ``max_evaluations`` before reaching ``t = 1``.
    lipschitz : float
        The Lipschitz constant used.
    """

    t: list
    n_crossings: np.ndarray
    length: np.ndarray
    n_evaluations: np.ndarray
    missed_depth: np.ndarray
    complete: np.ndarray
    lipschitz: float

    def first(self) -> np.ndarray:
        """The first crossing of each segment (``nan`` where there is none)."""
        return np.array([ts[0] if len(ts) else np.nan for ts in self.t])

    def to_frame(self) -> pd.DataFrame:
        """One row per segment."""
        return pd.DataFrame(
            {
                "n_crossings": self.n_crossings,
                "first_crossing": self.first(),
                "length": self.length,
                "n_evaluations": self.n_evaluations,
                "missed_depth": self.missed_depth,
                "complete": self.complete,
            }
        )


def scan_segments(
    model,
    start,
    end,
    *,
    source=None,
    target=None,
    lipschitz: float | None = None,
    resolution: float = 1e-4,
    max_evaluations: int = 100_000,
    xtol: float = 1e-9,
    progress: bool = False,
) -> SegmentCrossings:
    """Find every crossing of the decision boundary along segments from ``start`` to ``end`` (sec. 4.1).

    The margin ``g`` (see :func:`margin`) is ``L``-Lipschitz, so on the segment of length ``ell``
    it cannot vanish within ``|g(t)| / (L ell)`` of a point ``t``: the scan steps exactly that far
    (never less than ``resolution / ell``), which is the discretisation of sec. 4.1 made adaptive.
    Every sign change between consecutive samples is then bisected to the crossing.  All segments
    are scanned together, one batched forward pass per step.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    start, end : array_like, shape (n, n_features)
        End points ``a`` and ``b`` (``t = 0`` and ``t = 1``).
    source : int or array of shape (n,), optional
        Class ``i`` of the margin; default the class predicted at ``start``.
    target : int or array of shape (n,), optional
        Class ``j``; default every other class (a crossing is then any change of the prediction
        away from ``i`` or back).
    lipschitz : float, optional
        Lipschitz constant of the margin in the 2-norm; default :func:`margin_lipschitz`, the
        bound of eq. 15, which guarantees that no crossing is missed.  A smaller (estimated) value
        scans faster but the guarantee then rests on the estimate.
    resolution : float
        Smallest step (in input distance).  Where steps hit it, ``missed_depth`` reports how
        deep a missed pair of crossings could be.
    max_evaluations : int
        Margin evaluations per segment before the scan gives up (``complete=False``).
    xtol : float
        Bisection tolerance, in input distance.
    progress : bool
        Show a progress bar (over the longest segment's ``t``).

    Returns
    -------
    SegmentCrossings
    """
    params = network_params(model)
    a = _as_points(params, start, "start")
    b = _as_points(params, end, "end")
    if a.shape != b.shape:
        raise ValueError(f"start and end must have the same shape, got {a.shape} and {b.shape}")
    net = numpy_network(params)
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    if not (isinstance(max_evaluations, (int, np.integer)) and max_evaluations >= 2):
        raise ValueError(f"max_evaluations must be an integer >= 2, got {max_evaluations!r}")
    L = margin_lipschitz(params) if lipschitz is None else float(lipschitz)
    if not (np.isfinite(L) and L > 0):
        raise ValueError(f"lipschitz must be a positive finite number, got {lipschitz!r}")
    n = len(a)
    with np.errstate(over="ignore"):
        d = b - a
    if not np.all(np.isfinite(d)):
        i = int(np.flatnonzero(~np.all(np.isfinite(d), axis=1))[0])
        raise ValueError(f"segment {i} from start to end is too long for float64 (end - start overflows)")
    with np.errstate(over="ignore"):
        length = np.linalg.norm(d, axis=1)
    overflowed = ~np.isfinite(length)  # the length itself is finite: compute it with scaled rows
    length[overflowed] = _row_norms(d[overflowed])
    logits_a = net.logits(a)
    src = _classes(params, source, n, "source", logits_a.argmax(axis=1))
    tgt = _classes(params, target, n, "target", None)

    with threadpool_limits(limits=1, user_api="blas"):
        # Many small forward passes: one BLAS thread is fastest, and avoids the busy-waiting
        # of idle BLAS threads on a loaded machine (20x slower in our measurements).
        return _scan(net, a, d, length, src, tgt, L, resolution, max_evaluations, xtol, progress)


def _scan(net, a, d, length, src, tgt, L, resolution, max_evaluations, xtol, progress) -> SegmentCrossings:
    n = len(a)
    t = np.zeros(n)
    g = logit_margin(net.logits(a), src, tgt)
    n_eval = np.ones(n, dtype=np.int64)
    missed = np.zeros(n)
    active = length > 0
    brackets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (segment, lo, hi, g_lo)
    bar = tqdm(total=1.0, desc="scanning segments", disable=not progress, bar_format="{l_bar}{bar}| {n:.3f}/1")
    while active.any():
        idx = np.nonzero(active)[0]
        ell = length[idx]
        step = np.maximum(np.abs(g[idx]) / (L * ell), resolution / ell)
        t_new = np.minimum(t[idx] + step, 1.0)
        g_new = logit_margin(net.logits(a[idx] + t_new[:, None] * d[idx]), src[idx], None if tgt is None else tgt[idx])
        n_eval[idx] += 1
        changed = np.sign(g_new) != np.sign(g[idx])
        if changed.any():
            brackets.append((idx[changed], t[idx][changed], t_new[changed], g[idx][changed]))
        dip = 0.5 * (L * (t_new - t[idx]) * ell - np.abs(g[idx]) - np.abs(g_new))
        dip[changed] = 0.0
        missed[idx] = np.maximum(missed[idx], dip)
        t[idx], g[idx] = t_new, g_new
        active[idx] = (t_new < 1.0) & (n_eval[idx] < max_evaluations)
        if progress:
            bar.n = float(t[idx].min()) if idx.size else 1.0
            bar.refresh()
    bar.close()
    complete = (t >= 1.0) | (length == 0)

    crossings: list[list[float]] = [[] for _ in range(n)]
    if brackets:
        seg = np.concatenate([br[0] for br in brackets])
        lo = np.concatenate([br[1] for br in brackets])
        hi = np.concatenate([br[2] for br in brackets])
        g_lo = np.concatenate([br[3] for br in brackets])
        roots = bisect_boundary(net, a[seg], d[seg], src[seg], None if tgt is None else tgt[seg],
                                t_lo=lo, t_hi=hi, side=g_lo, xtol=xtol)
        for s, r in zip(seg, roots):
            crossings[s].append(float(r))
    ts = [np.sort(np.array(c, dtype=float)) for c in crossings]
    return SegmentCrossings(
        t=ts,
        n_crossings=np.array([len(c) for c in ts], dtype=np.int64),
        length=length,
        n_evaluations=n_eval,
        missed_depth=missed,
        complete=complete,
        lipschitz=L,
    )


def segment_outputs(model, start, end, *, n_points: int = 201, t_min: float = 0.0, t_max: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Softmax output along segments ``(1 - t) a + t b`` (figs. 2-4 of the paper).

    Parameters
    ----------
    model : keras.Model or NetworkParams
    start, end : array_like, shape (n, n_features)
    n_points : int
        Samples per segment, evenly spaced in ``[t_min, t_max]`` (``t < 0`` or ``t > 1`` extends
        the line beyond its end points).

    Returns
    -------
    t : ndarray, shape (n_points,)
    proba : ndarray, shape (n, n_points, n_classes)
    """
    params = network_params(model)
    a = _as_points(params, start, "start")
    b = _as_points(params, end, "end")
    if a.shape != b.shape:
        raise ValueError(f"start and end must have the same shape, got {a.shape} and {b.shape}")
    if not (isinstance(n_points, (int, np.integer)) and n_points >= 2):
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    t = np.linspace(t_min, t_max, n_points)
    pts = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]
    logits = numpy_network(params).logits(pts.reshape(-1, params.n_features)).reshape(len(a), n_points, params.n_classes)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    return t, p / p.sum(axis=2, keepdims=True)


# ----------------------------------------------------------------------- first-order estimate


def _margin_gradient(params: NetworkParams, x: np.ndarray, src: np.ndarray, tgt: np.ndarray, output: str = "logits",
                     batch_size: int = 1024):
    """``g = f_i - f_j`` and its gradient for every target ``j`` of ``tgt`` (shape ``(n, r)``),
    with ``f`` the logits (eqs. 11-12) or the softmax (eq. 13).

    Returns ``g`` of shape ``(n, r)`` and the gradients ``(n, r, n_features)``.
    """
    g_out = np.empty(tgt.shape)
    grad_out = np.empty(tgt.shape + (params.n_features,))
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        out = forward(params, x[sl]).logits.numpy()
        jac = logit_jacobian(params, x[sl], batch_size=batch_size)  # (b, C, d)
        if output == "softmax":
            p = np.exp(out - out.max(axis=1, keepdims=True))
            out = p / p.sum(axis=1, keepdims=True)
            jac = out[:, :, None] * (jac - np.einsum("bc,bcd->bd", out, jac)[:, None, :])
        rows = np.arange(len(out))[:, None]
        i, j = src[sl][:, None], tgt[sl]
        g_out[sl] = out[rows, i] - out[rows, j]
        grad_out[sl] = jac[rows, i] - jac[rows, j]
    return g_out, grad_out


def _source_target(params: NetworkParams, x: np.ndarray, source, target):
    """Source classes ``(n,)`` and target classes ``(n, r)``: ``r = 1`` (default the best other
    class), or every class with ``target="all"``."""
    logits = numpy_network(params).logits(x)
    src = _classes(params, source, len(x), "source", logits.argmax(axis=1))
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"target must be a class index, an array of class indices or 'all', got {target!r}")
        return src, np.broadcast_to(np.arange(params.n_classes), (len(x), params.n_classes))
    tgt = _classes(params, target, len(x), "target", None)
    if tgt is None:
        others = logits.copy()
        others[np.arange(len(x)), src] = -np.inf
        tgt = others.argmax(axis=1)
    if np.any(src == tgt):
        raise ValueError("source and target must differ for every point")
    return src, tgt[:, None]


def margin_gradient(model, x, *, source=None, target=None) -> tuple[np.ndarray, np.ndarray]:
    """The margin ``g = z_i - z_j`` and its gradient ``grad z_i - grad z_j`` (eqs. 11-12).

    Without a target, ``j`` is the best other class at each point.  The gradient norms are the
    local slopes that :func:`margin_lipschitz` bounds.

    Returns
    -------
    g : ndarray, shape (n,)
    gradient : ndarray, shape (n, n_features)
    """
    params = network_params(model)
    x = _as_points(params, x)
    if isinstance(target, str):
        raise ValueError(f"target must be a class index or an array of class indices, got {target!r}")
    src, tgt = _source_target(params, x, source, target)
    g, grad = _margin_gradient(params, x, src, tgt)
    return g[:, 0], grad[:, 0]


def taylor_distance(model, x, *, source=None, target=None, fixed=None, feature_weights=None,
                    output: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """First-order estimate of the distance to the decision boundary (Elsayed et al. 2018).

    The linearised distance ``d(x) = |c(x)| / ||grad c(x)||_{W^-1}`` of ``x`` to the boundary
    ``c = f_i - f_j = 0``: the distance, in the norm ``||v||_W = sqrt(sum w v^2)`` of eq. 1, to
    the zero of the first-order expansion ``c(x) + grad c(x)^T v`` when only the free features
    move.  ``f`` are the logits (their choice; exact for a network whose logits are affine) or
    the softmax probabilities, and the gradient comes from the Jacobian of eqs. 11-13.  Without
    a target, ``j`` is the best other class at ``x``.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n, n_features)
    source : int or array of shape (n,), optional
        As for :func:`margin`.
    target : int, array of shape (n,), or "all", optional
        As for :func:`margin`; ``"all"``: every class (the results gain a class axis, ``inf`` at
        the source class).
    fixed : bool array of shape (n_features,) or (n, n_features), optional
        Features that may not move (their gradient entries are dropped).
    feature_weights : float or array of shape (n_features,), optional
        Positive weights ``w`` of the distance; default ones (the Euclidean distance).
    output : {"logits", "softmax"}

    Returns
    -------
    distance : ndarray, shape (n,) (or (n, n_classes) for ``target="all"``)
        The estimate (``inf`` where the gradient vanishes).
    direction : ndarray, shape (n, n_features) (or (n, n_classes, n_features))
        The unit vector (in the weighted norm) along which the linearised margin falls to zero
        fastest: ``-sign(c) W^-1 grad c / ||grad c||_{W^-1}`` (``-sign(c) grad c / ||grad c||``
        unweighted); zero where the gradient vanishes.
    """
    if output not in ("logits", "softmax"):
        raise ValueError(f"output must be 'logits' or 'softmax', got {output!r}")
    params = network_params(model)
    x = _as_points(params, x)
    n, d = x.shape
    w = check_feature_weights(feature_weights, d)
    free = ~as_mask("fixed", fixed, n, d)
    src, tgt = _source_target(params, x, source, target)
    c, grad = _margin_gradient(params, x, src, tgt, output)
    grad = grad * free[:, None, :]
    norm = np.sqrt(np.sum(grad**2 / w, axis=2))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        distance = np.where(norm > 0, np.abs(c) / norm, np.inf)
        direction = np.where(norm[..., None] > 0, -np.sign(c)[..., None] * (grad / w) / norm[..., None], 0.0)
    if isinstance(target, str):
        return distance, direction
    return distance[:, 0], direction[:, 0]


def box_exit_distance(x, direction, lower, upper) -> np.ndarray:
    """How far ``x + s u`` can go along each direction ``u`` before leaving the box ``[lower, upper]``.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Points inside the box.
    direction : array_like, shape (n, d)
        Directions (not normalised: ``s`` is in units of ``||u||``; pass unit vectors for distances).
    lower, upper : float or array broadcastable to (n, d)

    Returns
    -------
    ndarray, shape (n,)
        The largest ``s >= 0`` with ``x + s u`` in the box (``inf`` if never left).
    """
    x = np.asarray(x, dtype=float)
    u = np.asarray(direction, dtype=float)
    if x.shape != u.shape or x.ndim != 2:
        raise ValueError(f"x and direction must have the same shape (n, d), got {x.shape} and {u.shape}")
    lo = np.broadcast_to(np.asarray(lower, dtype=float), x.shape)
    hi = np.broadcast_to(np.asarray(upper, dtype=float), x.shape)
    if np.any(x < lo - 1e-12) or np.any(x > hi + 1e-12):
        raise ValueError("x must lie inside the box [lower, upper]")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a tiny step: inf, no warning
        s = np.where(u > 0, (hi - x) / u, np.where(u < 0, (lo - x) / u, np.inf))
    return np.maximum(s.min(axis=1), 0.0)


def distance_along_direction(
    model,
    x,
    direction,
    *,
    max_distance: float,
    source=None,
    target=None,
    lipschitz: float | None = None,
    resolution: float = 1e-4,
    max_evaluations: int = 100_000,
    xtol: float = 1e-9,
) -> np.ndarray:
    """Distance from ``x`` to the first boundary crossing along ``direction`` (fig. 7).

    Scans the segment from ``x`` to ``x + max_distance u / ||u||`` with :func:`scan_segments` and
    returns the first crossing found by bisection.

    Returns
    -------
    ndarray, shape (n,)
        The distance, ``inf`` where the segment holds no crossing.
    """
    params = network_params(model)
    x = _as_points(params, x)
    u = _as_points(params, direction, "direction")
    if u.shape != x.shape:
        raise ValueError(f"direction must have shape {x.shape}, got {u.shape}")
    norm = np.linalg.norm(u, axis=1)
    if np.any(norm == 0):
        raise ValueError("direction holds a zero vector")
    if not max_distance > 0:
        raise ValueError(f"max_distance must be positive, got {max_distance}")
    end = x + max_distance * u / norm[:, None]
    scan = scan_segments(params, x, end, source=source, target=target, lipschitz=lipschitz, resolution=resolution,
                         max_evaluations=max_evaluations, xtol=xtol)
    first = scan.first()
    return np.where(np.isnan(first), np.inf, first * max_distance)


def angles_between(u, v) -> np.ndarray:
    """Angle in degrees between rows of ``u`` and ``v`` (``nan`` where one is zero)."""
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"u and v must have the same shape (n, d), got {u.shape} and {v.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        # Angles do not depend on the lengths: rows scaled to a largest entry of 1 cannot overflow.
        u = u / np.abs(u).max(axis=1, keepdims=True, initial=0.0)
        v = v / np.abs(v).max(axis=1, keepdims=True, initial=0.0)
        nu, nv = np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)
        cos = np.einsum("nd,nd->n", u, v) / (nu * nv)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


# ------------------------------------------------------------------------------ connectedness


def line_adjacency(model, points, *, cls: int, lipschitz: float | None = None, resolution: float = 1e-4,
                   max_evaluations: int = 100_000, batch_size: int = 2048, progress: bool = False) -> np.ndarray:
    """Which pairs of points are joined by a segment that stays in class ``cls`` (sec. 6).

    Parameters
    ----------
    model : keras.Model or NetworkParams
    points : array_like, shape (n, n_features)
        Points the model assigns to ``cls``.
    cls : int
        The class whose region is examined.
    lipschitz, resolution, max_evaluations
        As for :func:`scan_segments` (no crossing is missed with the default ``lipschitz``).
    batch_size : int
        Segments scanned together.

    Returns
    -------
    ndarray of bool, shape (n, n)
        Symmetric adjacency matrix with a False diagonal.
    """
    params = network_params(model)
    x = _as_points(params, points, "points")
    positive_int("batch_size", batch_size)
    pred = numpy_network(params).logits(x).argmax(axis=1)
    if np.any(pred != cls):
        raise ValueError(f"every point must be predicted as class {cls}; {int(np.sum(pred != cls))} are not")
    i, j = np.triu_indices(len(x), k=1)
    stays = np.zeros(len(i), dtype=bool)
    for s in tqdm(range(0, len(i), batch_size), desc="lines", disable=not progress):
        sl = slice(s, s + batch_size)
        scan = scan_segments(params, x[i[sl]], x[j[sl]], source=cls, lipschitz=lipschitz, resolution=resolution,
                             max_evaluations=max_evaluations)
        stays[sl] = (scan.n_crossings == 0) & scan.complete
    adjacency = np.zeros((len(x), len(x)), dtype=bool)
    adjacency[i, j] = stays
    return adjacency | adjacency.T


@dataclass(frozen=True)
class Connectedness:
    """Summary of a line-adjacency graph (sec. 6).

    Attributes
    ----------
    fraction_connected : float
        Fraction of the ``n (n - 1) / 2`` pairs joined by a segment.
    degree : ndarray of int, shape (n,)
        Number of direct neighbours per point.
    n_components : int
        Connected components of the graph (1: every pair is joined by a path of segments).
    labels : ndarray of int, shape (n,)
        Component of each point.
    """

    fraction_connected: float
    degree: np.ndarray
    n_components: int
    labels: np.ndarray

    @property
    def min_degree(self) -> int:
        return int(self.degree.min()) if self.degree.size else 0


def connectedness(adjacency) -> Connectedness:
    """Fraction of connected pairs, degrees and connected components (:mod:`scipy.sparse.csgraph`).

    Parameters
    ----------
    adjacency : array_like of bool, shape (n, n)
        Symmetric, e.g. from :func:`line_adjacency`.
    """
    adj = np.asarray(adjacency, dtype=bool)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {adj.shape}")
    if not np.array_equal(adj, adj.T):
        raise ValueError("adjacency must be symmetric")
    n = len(adj)
    off = adj & ~np.eye(n, dtype=bool)
    n_pairs = n * (n - 1) // 2
    fraction = float(off.sum() / 2 / n_pairs) if n_pairs else float("nan")
    n_comp, labels = scipy.sparse.csgraph.connected_components(scipy.sparse.csr_matrix(off), directed=False)
    return Connectedness(fraction_connected=fraction, degree=off.sum(axis=1), n_components=int(n_comp), labels=labels)


# ------------------------------------------------------------------------------------ attacks


def pgd_l2_attack(model, x, target, *, epsilon: float, steps: int = 100, step_size: float | None = None,
                  lower=None, upper=None) -> np.ndarray:
    """Minimise the cross-entropy loss of ``target`` within an l2 ball (sec. 7; Ilyas et al. 2019).

    Projected gradient descent: ``x <- proj(x - alpha grad / ||grad||)``, the projection onto the
    ball ``||x' - x||_2 <= epsilon`` followed by clipping to ``[lower, upper]``, all points at once.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n, n_features)
    target : int or array of shape (n,)
        The adversarial label.
    epsilon : float
        l2 budget.
    steps : int
    step_size : float, optional
        Default ``2.5 epsilon / steps`` (Madry et al.).
    lower, upper : float or array of shape (n_features,), optional

    Returns
    -------
    ndarray, shape (n, n_features)
        The attack's points (check their class: the budget may be too small).
    """
    params = network_params(model)
    x = _as_points(params, x)
    tgt = _classes(params, target, len(x), "target", None)
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    positive_int("steps", steps)
    alpha = 2.5 * epsilon / steps if step_size is None else float(step_size)
    lo = tf.constant(-np.inf if lower is None else np.broadcast_to(np.asarray(lower, float), x.shape[1:]), tf.float64)
    hi = tf.constant(np.inf if upper is None else np.broadcast_to(np.asarray(upper, float), x.shape[1:]), tf.float64)
    x0 = tf.constant(x)
    labels = tf.constant(tgt)

    @tf.function
    def step(xa):
        with tf.GradientTape() as tape:
            tape.watch(xa)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, forward(params, xa).logits)
        grad = tape.gradient(loss, xa)
        grad = grad / tf.maximum(tf.norm(grad, axis=1, keepdims=True), 1e-30)
        delta = xa - alpha * grad - x0
        delta = delta * tf.minimum(tf.constant(1.0, tf.float64), epsilon / tf.maximum(tf.norm(delta, axis=1, keepdims=True), 1e-30))
        return tf.clip_by_value(x0 + delta, lo, hi)

    xa = x0
    for _ in range(int(steps)):
        xa = step(xa)
    return xa.numpy()
