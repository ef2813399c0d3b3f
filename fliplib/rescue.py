"""Rescue paths: what fliplib does when the path of the papers does not end at a flip point.

From the papers: App. D.4's "alternative path", the direct solve from ``x`` where the homotopy
path fails (:func:`fliplib.flip.closest_flip_points` runs it as ``fallback``).

Not from the papers (fliplib's own, for the kinks of ReLU networks and for networks with many
local minima; ``benchmarks/README.md`` measures what each buys):

- :func:`restore_feasibility`: least-norm steps onto the violated linearised constraints, and
  bisection on ``z_i - z_j``, where the SQP stalls a little off the boundary;
- :func:`witness_starts`: a flip point by bisection on the segment from ``x`` towards the
  nearest points of the target class (inputs of the batch, or flip points found for others);
- :func:`boundary_walk`: projected steps along the boundary from such a point towards ``x``;
- :func:`restart_points`: random starts around ``x`` for extra direct solves.

Every answer of these paths is judged by the same evidence as any other
(:func:`fliplib.flip.flip_evidence`); only flip points closer than the current answer are kept.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .jacobian import vjp
from .params import forward, logits

__all__ = ["alternative_paths", "bisect", "boundary_walk", "first_crossing", "keep_nearest", "nearest_crossings",
           "restart_points", "restore_feasibility", "restore_stuck", "violation", "witness_starts"]


def bisect(inside, start: np.ndarray, end: np.ndarray, n_halvings: int) -> tuple[np.ndarray, np.ndarray]:
    """Bisection on segments ``start -> end`` (one per row) for where ``inside`` stops holding.

    ``inside(points)`` is a boolean per row; it should hold at ``start`` and fail at ``end``.
    Returns the parameters ``s_in <= s_out`` in ``[0, 1]`` that bracket the change, ``n_halvings``
    halvings apart.  (The one bisection of the solver: on the sign of ``z_i - z_j`` in
    :func:`restore_feasibility`, on the predicted class in :func:`first_crossing`.)
    """
    s_in, s_out = np.zeros(len(start)), np.ones(len(start))
    for _ in range(n_halvings):
        mid = 0.5 * (s_in + s_out)
        ok = inside(start + mid[:, None] * (end - start))
        s_in, s_out = np.where(ok, mid, s_in), np.where(ok, s_out, mid)
    return s_in, s_out


def violation(params, points, src, tgt, margin: float):
    """At ``points`` on the original network: ``c = z_i - z`` (every class), the l1 violation
    ``|c_j| + sum_k max(0, margin - c_k)`` of eqs. 3-4, and ``max(1, |z_i|)``."""
    z = forward(params, tf.constant(points)).logits.numpy()
    rows = np.arange(len(points))
    c = z[rows, src][:, None] - z
    others = np.ones_like(c, dtype=bool)
    others[rows, src] = others[rows, tgt] = False
    violation = np.abs(c[rows, tgt]) + np.sum(np.where(others, np.maximum(margin - c, 0.0), 0.0), axis=1)
    return c, violation, np.maximum(1.0, np.abs(z[rows, src]))


def restore_feasibility(params, x, lo, hi, src, tgt, *, margin: float, gap_tol: float, n_newton: int = 8,
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
        c, viol, scale = violation(params, x, src, tgt, margin)
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
            c_t, v_t, _ = violation(params, trial, src[act[left]], tgt[act[left]], margin)
            t_rows = np.arange(left.size)
            crossed = only_gap[left] & (np.sign(c_t[t_rows, tgt[act[left]]]) != np.sign(c_a[left, tgt[act[left]]]))
            if crossed.any():
                cut = act[left[crossed]]
                x[cut] = _bisect_gap(params, x[cut], trial[crossed], src[cut], tgt[cut], n_halvings)
                x[cut] = np.clip(x[cut], lo[cut], hi[cut])
                moved[left[crossed]] = True
            better = ~crossed & (v_t < viol[act[left]])
            x[act[left[better]]] = trial[better]
            moved[left[better]] = True
            alpha[left] *= 0.5
        if not moved.any():
            break
    return x, evals


def _bisect_gap(params, start, end, src, tgt, n_halvings: int) -> np.ndarray:
    """The point where ``c_j = z_i - z_j`` changes sign on segments whose ends have opposite signs."""
    rows = np.arange(len(start))

    def gap_sign(points):
        z = forward(params, tf.constant(points)).logits.numpy()
        return np.sign(z[rows, src] - z[rows, tgt])

    side = gap_sign(start)
    _, s_out = bisect(lambda p: gap_sign(p) == side, start, end, n_halvings)
    return start + s_out[:, None] * (end - start)


def predict(params, points: np.ndarray, chunk: int = 8192, *, precision: str = "float64") -> np.ndarray:
    """Logits of the original network at ``points`` (..., n_features), in chunks of rows;
    ``precision="float32"`` for the scans of the global search (:func:`fliplib.params.logits`)."""
    flat = points.reshape(-1, points.shape[-1])
    dtype = {"float64": tf.float64, "float32": tf.float32}[precision]
    z = [np.asarray(logits(params, flat[k:k + chunk], dtype=dtype), np.float64) for k in range(0, len(flat), chunk)]
    return np.concatenate(z or [np.empty((0, params.n_classes))]).reshape(points.shape[:-1] + (params.n_classes,))



def first_crossing(params, start, end, src, tgt, *, n_samples: int = 64, n_halvings: int = 60,
                   return_class: bool = False, precision: str = "float64"):
    """Where the segment ``start -> end`` first leaves the source class, if it enters the target.

    A target of ``-1`` accepts any other class (``return_class`` then says which was entered).

    ``n_samples`` points along each segment locate the first one not classified as ``src``;
    where that one is classified as ``tgt``, bisection on ``argmax z == src`` puts the point on
    the boundary between the two (``z_i = z_j``, every other class below): a feasible point of
    eqs. 2-4.  Where the path crossed a third class first (inside the last sampled interval) or
    never left the source class, or ``start`` is not in it, nothing is found.  With
    ``n_halvings=0`` the point returned is the last sample still in the source class, a step
    ``(end - start) / n_samples`` before the first one out (:func:`nearest_crossings` refines
    only the nearest of many).  ``precision`` is that of the forward passes (:func:`predict`).

    Returns
    -------
    inside : ndarray, shape (n, n_features)
        The boundary point, on the source side (``start`` where nothing was found).
    found : ndarray of bool, shape (n,)
    entered : ndarray of int, shape (n,)
        With ``return_class``: the class entered (``-1`` where nothing was found).
    """
    n = len(start)
    rows = np.arange(n)
    t_grid = np.linspace(0.0, 1.0, n_samples + 1)
    label = np.argmax(predict(params, start[:, None] + t_grid[None, :, None] * (end - start)[:, None],
                              precision=precision), axis=2)
    first = np.argmax(label != src[:, None], axis=1)  # 0 where the path never leaves (or start is not in src)
    tgt = np.where(np.asarray(tgt) < 0, label[rows, first], tgt)
    found = (first > 0) & (label[rows, first] == tgt)
    a = start + t_grid[np.maximum(first - 1, 0)][:, None] * (end - start)
    b = start + t_grid[first][:, None] * (end - start)
    s_in, s_out = np.zeros(n), np.ones(n)
    idx = np.flatnonzero(found)
    if idx.size:
        s_in[idx], s_out[idx] = bisect(lambda p: np.argmax(predict(params, p, precision=precision), axis=1) == src[idx],
                                       a[idx], b[idx], n_halvings)
    inner = a + s_in[:, None] * (b - a)
    outer = a + s_out[:, None] * (b - a)
    # Within the last sampled interval the path may have crossed a third class first (without
    # halvings, outer is the sample already known to be in the target class).
    if n_halvings:
        found[idx] &= np.argmax(predict(params, outer[idx], precision=precision), axis=1) == tgt[idx]
    if return_class:
        return np.where(found[:, None], inner, start), found, np.where(found, tgt, -1)
    return np.where(found[:, None], inner, start), found


def across(points, inputs):
    """Flip points pushed 1% further from their inputs: just across the boundary, in the target class."""
    return points + 0.01 * (points - inputs)


def keep_nearest(r, points, cls, x0, k: int):
    """Per problem (row), the ``k`` candidates of smallest finite distance ``r``, nearest first:
    their points, distances and classes; ``x``, ``inf`` and ``-1`` where fewer were found
    (``r``: shape (n, m); ``points``: (n, m, n_features); ``cls``: (n, m); ``x0``: (n, n_features)).

    The witness starts below and the rays and samples of :mod:`fliplib.search` choose their
    starts with it."""
    order = np.argsort(r, axis=1)[:, :k]
    dist = np.take_along_axis(r, order, axis=1)
    hit = np.isfinite(dist)
    label = np.where(hit, np.take_along_axis(cls, order, axis=1), -1)
    starts = np.where(hit[:, :, None], np.take_along_axis(points, order[:, :, None], axis=1), x0[:, None])
    return starts, dist, label


def nearest_crossings(params, x0, ends, src, tgt, w, k: int, *, valid=None, n_samples: int = 64,
                      n_halvings: int = 60, precision: str = "float64"):
    """Per problem, the ``k`` nearest boundary points of :func:`first_crossing` on the segments
    ``x0 -> ends[:, s]``: every segment is scanned at ``n_samples`` points, and only the ``k``
    whose last sample in the source class is nearest are refined, by ``n_halvings`` halvings.

    Parameters
    ----------
    x0 : ndarray, shape (n, n_features)
    ends : ndarray, shape (n, m, n_features)
    src : ndarray of int, shape (n,)
    tgt : ndarray of int, shape (n,) or (n, m)
        The class a segment must enter (``-1``: any other class).
    w : ndarray, shape (n, n_features)
        The weights of the distance.
    valid : ndarray of bool, shape (n, m), optional
        The segments to scan (default all).

    Returns
    -------
    starts : ndarray, shape (n, min(k, m), n_features)
        Nearest first; ``x0`` where fewer were found.
    distance : ndarray, shape (n, min(k, m))
        ``inf`` there.
    entered : ndarray of int, shape (n, min(k, m))
        The class entered (``-1`` there).
    """
    n, m, d = ends.shape
    k = min(k, m)
    tgt = np.broadcast_to(np.asarray(tgt)[:, None] if np.ndim(tgt) == 1 else tgt, (n, m))
    points, dist, label = np.repeat(x0[:, None], k, axis=1), np.full((n, k), np.inf), np.full((n, k), -1)
    row, seg = np.nonzero(np.ones((n, m), bool) if valid is None else valid)
    if row.size == 0:
        return points, dist, label
    inner, hit, cls = first_crossing(params, x0[row], ends[row, seg], src[row], tgt[row, seg], n_samples=n_samples,
                                     n_halvings=0, return_class=True, precision=precision)
    coarse = np.full((n, m), np.inf)
    coarse[row, seg] = np.where(hit, np.sqrt(np.sum(w[row] * (inner - x0[row]) ** 2, axis=1)), np.inf)
    where = np.full((n, m), -1)
    where[row, seg] = np.arange(len(row))
    order = np.argsort(coarse, axis=1, kind="stable")[:, :k]
    found = np.isfinite(np.take_along_axis(coarse, order, axis=1))
    pick = np.where(found, np.take_along_axis(where, order, axis=1), -1)  # the kept segments' rows
    p_row, p_slot = np.nonzero(pick >= 0)
    if p_row.size:
        q = pick[p_row, p_slot]
        a = inner[q]
        b = a + (ends[row[q], seg[q]] - x0[p_row]) / n_samples  # the first sample out of the source class
        fine, ok, entered = first_crossing(params, a, b, src[p_row], cls[q], n_samples=1, n_halvings=n_halvings,
                                           return_class=True, precision=precision)
        points[p_row, p_slot] = fine
        dist[p_row, p_slot] = np.where(ok, np.sqrt(np.sum(w[p_row] * (fine - x0[p_row]) ** 2, axis=1)), np.inf)
        label[p_row, p_slot] = entered
    return keep_nearest(dist, points, label, x0, k)


def witness_starts(params, x0, lo, hi, w, src, tgt, witnesses, *, n_witnesses: int = 5, n_keep: int = 1,
                   chunk: int = 256, n_samples: int = 64, n_halvings: int = 60, precision: str = "float64"):
    """Flip points on segments from ``x0`` towards points the network assigns to the target class.

    For each problem, the ``n_witnesses`` nearest ``witnesses`` classified as ``tgt`` (moved
    into the problem's box, which also keeps its fixed features), and on the segments
    ``x0 -> witness`` the ``n_keep`` boundary points nearest to ``x0``
    (:func:`nearest_crossings`).  Each is a feasible point of eqs. 2-5, usually not the closest
    one.  Problems are taken ``chunk`` at a time (fewer when there are many witnesses or
    features), so memory stays bounded.

    Returns
    -------
    starts : ndarray, shape (n, n_keep, n_features)
        The boundary points, nearest to ``x0`` first (``x0`` where fewer were found).
    found : ndarray of bool, shape (n, n_keep)
    """
    n = len(x0)
    starts, found = np.repeat(x0[:, None], n_keep, axis=1), np.zeros((n, n_keep), dtype=bool)
    if len(witnesses) == 0 or n == 0:
        return starts, found
    label_w = np.argmax(predict(params, witnesses, precision=precision), axis=1)
    n_near = min(n_witnesses, len(witnesses))
    # At most about 2**24 squared distances, and 2**24 scanned coordinates, at a time.
    chunk = max(1, min(chunk, 2**24 // len(witnesses), 2**24 // (n_near * (n_samples + 1) * x0.shape[1])))
    for c0 in range(0, n, chunk):
        sl = slice(c0, c0 + chunk)
        xs, ws_ = x0[sl], w[sl]
        d2 = np.sum(ws_ * xs**2, axis=1)[:, None] - 2.0 * (ws_ * xs) @ witnesses.T + ws_ @ (witnesses**2).T
        d2 = np.where(label_w[None] == tgt[sl, None], d2, np.inf)
        nearest = np.argpartition(d2, n_near - 1, axis=1)[:, :n_near]  # the nearest, in linear time
        valid = np.isfinite(np.take_along_axis(d2, nearest, axis=1))
        ends = np.clip(witnesses[nearest], lo[sl, None], hi[sl, None])
        points, dist, _ = nearest_crossings(params, xs, ends, src[sl], tgt[sl], ws_, n_keep, valid=valid,
                                            n_samples=n_samples, n_halvings=n_halvings, precision=precision)
        m = points.shape[1]
        starts[sl, :m] = np.clip(points, lo[sl, None], hi[sl, None])
        found[sl, :m] = np.isfinite(dist)
    return starts, found


def boundary_walk(params, x0, lo, hi, w, src, tgt, witnesses, *, margin: float, n_rounds: int = 40, n_tries: int = 6):
    """Flip points for problems the SQP from ``x0`` could not solve, approached along the boundary.

    Starting from the boundary points of :func:`witness_starts`, each round moves the current
    flip point ``s`` along the boundary towards ``x0``: the step is ``x0 - s`` projected (in the
    ``w``-metric) onto the tangent plane of ``c_j = z_i - z_j = 0`` at ``s`` (free features
    only), halved up to ``n_tries`` times.  Each trial point is brought back onto the boundary by
    :func:`first_crossing`: on the segment from ``x0`` where it lies in the target class, along
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
    current, found = witness_starts(params, x0, lo, hi, w, src, tgt, witnesses)
    current, found = current[:, 0], found[:, 0]
    evals = np.zeros(n, dtype=np.int64)
    eye = np.eye(params.n_classes)

    def distance(points, rows):
        return np.sqrt(np.sum(w[rows] * (points - x0[rows]) ** 2, axis=1))

    best = np.where(found, distance(current, np.arange(n)), np.inf)
    active = np.flatnonzero(found)
    alpha = np.ones(n)
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
            inner, hit = _onto_boundary(params, x0[p], s[left], trial, a[left], a_w[left], src[p], tgt[p],
                                        lo[p], hi[p], margin)
            d_new = distance(inner, p)
            ok = hit & (d_new < best[p] * (1.0 - 1e-9))
            current[p[ok]], best[p[ok]] = inner[ok], d_new[ok]
            moved[left[ok]] = True
            alpha[p[ok]] = np.minimum(2.0 * alpha[p[ok]], 1.0)
            alpha[p[~ok]] *= 0.5
        # A problem whose trials all failed this round keeps its (now much shorter) step.
        active = active[alpha[active] > 1e-4]
    return current, evals, found




def _onto_boundary(params, x0, s, trial, a, a_w, src, tgt, lo, hi, margin):
    """A trial point of :func:`boundary_walk` brought back onto the boundary between ``src`` and
    ``tgt``; ``hit`` where that worked and every other class is below by ``margin`` (eq. 4)."""
    z = predict(params, trial)
    rows = np.arange(len(trial))
    gap = z[rows, src] - z[rows, tgt]
    # In the target class: back along the segment from x0.  In the source class: along
    # the normal, four times the linear estimate of the distance to the boundary.
    in_target = np.argmax(z, axis=1) == tgt
    beta = 4.0 * np.maximum(gap, 0.0) / np.maximum(np.sum(a * a_w, axis=1), 1e-300)
    start = np.where(in_target[:, None], x0, trial)
    end = np.where(in_target[:, None], trial, np.clip(trial - beta[:, None] * a_w, lo, hi))
    short = dict(n_samples=16, n_halvings=40)  # the walk's segments are short
    inner, hit = first_crossing(params, start, end, src, tgt, **short)
    # Failing that, towards the point just beyond s on the ray from x0 (usually across).
    beyond = np.clip(across(s, x0), lo, hi)
    retry = np.flatnonzero(~hit & ~in_target)
    if retry.size:
        inner_r, hit_r = first_crossing(params, trial[retry], beyond[retry], src[retry], tgt[retry], **short)
        inner[retry[hit_r]], hit[retry[hit_r]] = inner_r[hit_r], True
    inner = np.clip(inner, lo, hi)
    z = predict(params, inner)
    classes = np.arange(params.n_classes)[None]
    others = np.where((classes == src[:, None]) | (classes == tgt[:, None]), -np.inf, z)
    return inner, hit & (others.max(axis=1) <= z[rows, src] - margin)


def restore_stuck(params, problems, final, *, margin: float, gap_tol: float, watchdog: bool):
    """Feasibility restoration (:func:`restore_feasibility`) for the problems F left without a
    flip point but with a small violation (at most a tenth of ``max(1, |z_i|)``: a stall at a
    kink), from whichever of the last iterate and the least-gap iterate violates less.

    Returns the points and the Jacobian evaluations spent.
    """
    x, extra = final.x.copy(), np.zeros(len(final.x), np.int64)
    stuck = np.flatnonzero(~final.feasible)
    if stuck.size == 0:
        return x, extra
    src, tgt = problems.src[stuck], problems.tgt[stuck]
    _, viol, scale = violation(params, x[stuck], src, tgt, margin)
    if watchdog:
        # The watchdog may have jumped away from the least violation.
        _, v_least, s_least = violation(params, final.x_least[stuck], src, tgt, margin)
        use = final.progressed[stuck] & (v_least < viol)
        x[stuck[use]] = final.x_least[stuck[use]]
        viol, scale = np.where(use, v_least, viol), np.where(use, s_least, scale)
    stuck = stuck[viol <= 0.1 * scale]
    if stuck.size:
        x[stuck], extra[stuck] = restore_feasibility(params, x[stuck], problems.lo[stuck], problems.hi[stuck],
                                                     problems.src[stuck], problems.tgt[stuck], margin=margin,
                                                     gap_tol=gap_tol)
    return x, extra


def restart_points(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Starts for the ``k``-th restart: Gaussian around ``x``, standard deviation 0.1 (even ``k``)
    or 0.3 (odd ``k``) times ``max(1, rms(x))``, moved into the bounds."""
    spread = np.maximum(1.0, np.sqrt(np.mean(x**2, axis=1)))[:, None]
    return np.clip(x + (0.1, 0.3)[k % 2] * spread * rng.standard_normal(x.shape), lo, hi)


def alternative_paths(batch, answers, everything: np.ndarray) -> None:
    """App. D.4's alternative path (the direct solve from ``x``) where the path failed (or, with
    ``"closer"``, everywhere), then :func:`boundary_walk` for what still fails.

    ``batch`` solves and judges problems and ``answers`` adopts better ones (the helpers of
    :func:`fliplib.flip.closest_flip_points`)."""
    again = everything[~answers.ok()] if batch.fallback == "failed" else everything
    if again.size:
        answers.try_starts(again, None)
    for _ in range(3):  # each pass's new flip points are witnesses for the next one
        again = everything[~answers.ok()]
        if again.size == 0:
            break
        p = batch.problems(again)
        walked, jac_w, found = boundary_walk(batch.params, p.x0, p.lo, p.hi, batch.w, p.src, p.tgt,
                                                    batch.witnesses(), margin=batch.opts.margin)
        answers.n_jac[again] += jac_w
        if not found.any():
            break
        answers.adopt(again[found], walked[found], batch.judge(again[found], walked[found]), closer_only=False)
