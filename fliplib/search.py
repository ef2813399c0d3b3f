"""The global stage: the papers' ball argument made into a batched search.

Once a flip point at distance ``r`` from ``x`` is known, every closer flip point lies in the
ball ``B(x, r)`` (MSML 2020, introduction and App. E.1, where the papers call their approach a
global optimisation).  This stage searches that ball for closer flip points of the same pair of
classes, from many starts, for the whole batch at once:

- **rays**: directions from ``x`` (random, and towards the current flip point's neighbours on
  the boundary), each scanned out to the ball's surface for where it first leaves class ``i``
  (:func:`fliplib.rescue.first_crossing`).  Such a crossing is itself a flip point, closer than
  ``r``; the nearest ones become starts;
- **perturbations**: points ``x + rho r u`` inside the ball, for random unit ``u`` (the several
  starts an off-the-shelf solver is given, scaled to the ball);
- **witnesses**: boundary points on the segments from ``x`` towards the nearest points that the
  network assigns to class ``j``: inputs of the call, flip points found, and the caller's
  ``witnesses`` such as the training set (:func:`fliplib.rescue.witness_starts`);
- **other targets**: where an input has several targets (``target="all"`` or an ``(n, r)``
  array), the flip points already found for the same input towards its other targets
  (:func:`other_target_starts`); those of nearer classes lie inside the ball, and F moves from
  them along the boundary of class ``i`` towards class ``j``.  With ``target="any"``, F likewise
  runs from the current flip point towards the next nearest classes;
- **samples**: random points of the ball that the network assigns to class ``j``, the nearest
  ones (forward passes only).  Unlike a ray, a sample finds a region of class ``j`` that lies
  behind a third class as seen from ``x``; F, started inside it, moves to its boundary with
  class ``i``.

From every start the inner solver F (:func:`fliplib.sqp.solve_final`) solves the problem on the
original network; a new answer replaces the current one only where it is a flip point closer to
``x``, which shrinks the ball for the next round.  A problem without any flip point so far is
searched in the ball that holds its box (unbounded features count as ``max(1, |x|)`` away),
twice as wide in each further round.  The search is a heuristic
with a certificate of what it looked at, not a proof of global optimality: the result records
the radius searched and the number of starts, so a reader knows what "closest" was checked
against.  ``tests/test_search.py`` measures it against an exhaustive search of the plane
(:mod:`fliplib.plane`).
"""

from __future__ import annotations

import numpy as np

import tensorflow as tf

from . import rescue
from .jacobian import vjp
from .params import forward

#: How the search scans for crossings and samples classes: in float32 (about four times faster
#: than float64 on a CPU; the class differs only within float32 rounding of a tie), each
#: crossing bisected to 2**-24 of its sampled interval.  These points are only starts: F solves
#: from them in float64 and every answer is judged in float64.
SCAN = dict(precision="float32", n_halvings=24)

__all__ = ["ball_radius", "global_stage", "nearest_linearised_class", "other_target_starts", "perturbation_starts",
           "ray_starts", "sample_starts"]


def _unit(rng: np.random.Generator, shape, free, w) -> np.ndarray:
    """Random directions of unit ``w``-norm over the free features."""
    u = rng.standard_normal(shape) * free[:, None, :]
    return u / np.maximum(np.sqrt(np.sum(w[:, None, :] * u**2, axis=2, keepdims=True)), 1e-300)


def ball_radius(distance: np.ndarray, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The radius to search: the current distance, or, where no flip point is known, the largest
    distance from ``x`` to a corner of its box (unbounded features count as ``max(1, |x|)`` away
    on both sides: the scale at which F starts too)."""
    scale = np.maximum(1.0, np.abs(x0))
    reach = np.maximum(np.where(np.isfinite(hi), hi - x0, scale), np.where(np.isfinite(lo), x0 - lo, scale))
    box = np.sqrt(np.sum(w * reach**2, axis=1))
    return np.where(np.isfinite(distance), distance, box)


def ray_starts(params, x0, lo, hi, w, src, tgt, radius, *, n_rays: int, n_keep: int, rng, n_samples: int = 32,
               chunk_floats: int = 2**24):
    """The ``n_keep`` nearest boundary points per problem on ``n_rays`` random rays from ``x``.

    Each ray runs from ``x`` to the surface of the ball of ``radius`` (clipped to the box) and
    yields the point where it first leaves class ``src`` into class ``tgt`` (``-1``: any class).

    Returns
    -------
    starts : ndarray, shape (n, n_keep, n_features)
    distance : ndarray, shape (n, n_keep)
        ``inf`` where no crossing was found.
    entered : ndarray of int, shape (n, n_keep)
        The class entered (``tgt``, or for ``-1`` the class the ray entered).
    """
    n, d = x0.shape
    free = hi > lo
    starts = np.repeat(x0[:, None], n_keep, axis=1)
    dist, entered = np.full((n, n_keep), np.inf), np.full((n, n_keep), -1)
    chunk = max(1, chunk_floats // (n_rays * (n_samples + 1) * d))
    for c in range(0, n, chunk):
        sl = slice(c, c + chunk)
        u = _unit(rng, (len(x0[sl]), n_rays, d), free[sl], w[sl])
        ends = np.clip(x0[sl, None] + radius[sl, None, None] * u, lo[sl, None], hi[sl, None])
        k = min(n_keep, n_rays)
        starts[sl, :k], dist[sl, :k], entered[sl, :k] = rescue.nearest_crossings(
            params, x0[sl], ends, src[sl], tgt[sl], w[sl], k, n_samples=n_samples, **SCAN)
    return starts, dist, entered


def perturbation_starts(x0, lo, hi, w, radius, rhos, rng) -> np.ndarray:
    """Starts ``x + rho r u`` inside the ball, one per ``rho``, moved into the box: shape
    ``(n, len(rhos), n_features)``."""
    u = _unit(rng, (len(x0), len(rhos), x0.shape[1]), hi > lo, w)
    scale = radius[:, None, None] * np.asarray(rhos)[None, :, None]
    return np.clip(x0[:, None] + scale * u, lo[:, None], hi[:, None])


def sample_starts(params, x0, lo, hi, w, src, tgt, radius, *, n_samples: int, n_keep: int, rng,
                  chunk_floats: int = 2**24):
    """The ``n_keep`` nearest of ``n_samples`` random points of the ball (clipped to the box)
    that the network assigns to class ``tgt`` (``-1``: any class but ``src``).

    A sample lies at ``x + t r u`` with ``u`` a random unit direction and ``t`` uniform in
    ``(0, 1]``: as many samples near ``x`` as near the ball's surface, where uniform sampling of
    the ball's volume would put nearly all of them in high dimensions.

    Returns
    -------
    starts : ndarray, shape (n, n_keep, n_features)
        ``x`` where fewer samples were of the class.
    distance : ndarray, shape (n, n_keep)
        ``inf`` there.
    label : ndarray of int, shape (n, n_keep)
        The class of each sample (``-1`` where none).
    """
    n, d = x0.shape
    free = hi > lo
    starts = np.repeat(x0[:, None], n_keep, axis=1)
    dist, label = np.full((n, n_keep), np.inf), np.full((n, n_keep), -1)
    chunk = max(1, chunk_floats // (n_samples * d))
    for c in range(0, n, chunk):
        sl = slice(c, c + chunk)
        m = len(x0[sl])
        t = rng.uniform(0.0, 1.0, size=(m, n_samples, 1))
        points = np.clip(x0[sl, None] + radius[sl, None, None] * t * _unit(rng, (m, n_samples, d), free[sl], w[sl]),
                         lo[sl, None], hi[sl, None])
        cls = np.argmax(rescue.predict(params, points, precision=SCAN["precision"]), axis=2)
        wanted = np.where(tgt[sl, None] < 0, cls != src[sl, None], cls == tgt[sl, None])
        r = np.where(wanted, np.sqrt(np.sum(w[sl, None] * (points - x0[sl, None]) ** 2, axis=2)), np.inf)
        k = min(n_keep, n_samples)
        starts[sl, :k], dist[sl, :k], label[sl, :k] = rescue.keep_nearest(r, points, cls, x0[sl], k)
    return starts, dist, label


def other_target_starts(inputs: np.ndarray, tgt: np.ndarray, x_found: np.ndarray, distance: np.ndarray,
                        sub: np.ndarray, k: int):
    """Per problem ``sub``, the ``k`` nearest flip points found for the same input towards its
    other targets (``target="all"`` or an ``(n, r)`` array): they lie on the boundary of class
    ``i``, inside the ball when their class is nearer than the problem's own, and F moves from
    there along the boundary towards the problem's class.

    ``inputs``, ``tgt``, ``x_found`` and ``distance`` describe every problem of the call (the
    input, the target, the current flip point and its distance, ``inf`` where none is known).

    Returns
    -------
    starts : ndarray, shape (len(sub), min(k, tgt.max() + 1), n_features)
        Nearest first; the problem's own current point where fewer were found.
    found : ndarray of bool, same shape without the last axis
    """
    table = np.full((inputs.max(initial=-1) + 1, tgt.max(initial=-1) + 1), -1)  # problem per (input, class)
    table[inputs, tgt] = np.arange(len(inputs))
    others = table[inputs[sub]]
    others[np.arange(len(sub)), tgt[sub]] = -1
    d = np.where(others >= 0, distance[others], np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    found = np.isfinite(np.take_along_axis(d, order, axis=1))
    starts = np.where(found[:, :, None], x_found[np.take_along_axis(others, order, axis=1)], x_found[sub][:, None])
    return starts, found


def global_stage(batch, answers, idx: np.ndarray, rng: np.random.Generator, *, any_classes=None):
    """Search the ball of every problem ``idx`` for closer flip points (the module docstring).

    ``batch`` solves and judges problems (``fliplib.flip._Batch``), ``answers`` holds the
    current answer of each and adopts closer flip points (``fliplib.flip._Answers``).
    ``any_classes`` (``target="any"``), shape ``(len(idx), k)``: the other classes of each
    problem's input, nearest first.  Rays and samples then accept any class other than ``i``
    (a start's target is the class entered), and F also runs from the current answer towards
    each of the ``search_keep // 2`` nearest of these classes (what :func:`other_target_starts`
    does for several targets).  Returns the radius searched and the starts per problem.
    """
    any_class = any_classes is not None
    o = batch.opts
    radius_searched, n_starts = np.zeros(len(idx)), np.zeros(len(idx), np.int64)
    todo = np.arange(len(idx))
    for round_ in range(o.search_rounds):
        if todo.size == 0:
            break
        p, sub = batch.problems(idx[todo]), idx[todo]
        before = np.where(answers.ok()[sub], answers.ev["distance"][sub], np.inf)
        # Where no flip point is known yet, each round searches a ball twice as wide as the last.
        r = ball_radius(before, p.x0, p.lo, p.hi, p.w) * np.where(np.isfinite(before), 1.0, 2.0**round_)
        radius_searched[todo] = np.maximum(radius_searched[todo], r)
        seek = np.where(any_class, -1, p.tgt)  # the class a ray or a sample must be of (-1: any other)
        ray, ray_d, ray_cls = ray_starts(batch.params, p.x0, p.lo, p.hi, p.w, p.src, seek, r,
                                         n_rays=o.search_rays, n_keep=o.search_keep, rng=rng)
        pert = perturbation_starts(p.x0, p.lo, p.hi, p.w, r, o.search_perturbations, rng)
        smp, smp_d, smp_cls = sample_starts(batch.params, p.x0, p.lo, p.hi, p.w, p.src, seek, r,
                                            n_samples=o.search_samples, n_keep=max(1, o.search_keep // 2), rng=rng)
        starts = [ray, pert, smp]
        targets = [np.where(ray_cls >= 0, ray_cls, p.tgt[:, None]), np.repeat(p.tgt[:, None], pert.shape[1], axis=1),
                   np.where(smp_cls >= 0, smp_cls, p.tgt[:, None])]
        valid = [np.isfinite(ray_d), np.ones(pert.shape[:2], bool), np.isfinite(smp_d)]
        if round_ == 0:  # the direct path from x, where it has not run yet
            starts.append(p.x0[:, None]), targets.append(p.tgt[:, None])
            valid.append(~batch.solved_from_x[sub][:, None])
            # the nearest data of the target class, brought to the boundary
            wit, found = rescue.witness_starts(batch.params, p.x0, p.lo, p.hi, p.w, p.src, p.tgt, batch.witnesses(),
                                               n_witnesses=2 * o.search_keep, n_keep=o.search_keep, **SCAN)
            starts.append(wit), targets.append(np.repeat(p.tgt[:, None], wit.shape[1], axis=1)), valid.append(found)
            if not any_class:  # the flip points of the same input towards other classes
                known = np.where(answers.ok(), answers.ev["distance"], np.inf)
                oth, found = other_target_starts(batch.inputs, batch.tgt, answers.x, known, sub, o.search_keep)
                starts.append(oth), targets.append(np.repeat(p.tgt[:, None], oth.shape[1], axis=1)), valid.append(found)
            else:  # from the current flip point along the boundary of class i towards the next classes
                near = any_classes[todo, : max(1, o.search_keep // 2)]
                starts.append(np.repeat(answers.x[sub][:, None], near.shape[1], axis=1)), targets.append(near)
                valid.append((near != batch.tgt[sub][:, None]) & answers.ok()[sub][:, None])
        starts, targets, valid = (np.concatenate(a, axis=1) for a in (starts, targets, valid))
        which, slot = np.nonzero(valid)
        x_s, jac_s, _ = batch.solve(sub[which], "direct", starts[which, slot], tgt=targets[which, slot])
        np.add.at(answers.n_jac, sub[which], jac_s)
        n_starts[todo] += np.bincount(which, minlength=len(todo))
        ev_s = batch.judge(sub[which], x_s, tgt=targets[which, slot])
        best = _best_per_problem(which, ev_s, answers.ok(ev_s))
        answers.adopt(sub[which[best]], x_s[best], {k: v[best] for k, v in ev_s.items()},
                      tgt=targets[which[best], slot[best]])
        after = np.where(answers.ok()[sub], answers.ev["distance"][sub], np.inf)
        # Search again where the ball shrank (the smaller one), and where no flip point is known yet.
        todo = todo[(after < before * (1.0 - 1e-6)) | ~np.isfinite(after)]
    return radius_searched, n_starts


def _best_per_problem(which: np.ndarray, ev: dict, ok: np.ndarray) -> np.ndarray:
    """Per problem (the values of ``which``), the index of its closest flip point among the candidates."""
    d = np.where(ok, ev["distance"], np.inf)
    order = np.lexsort((d, which))
    first = np.r_[True, which[order][1:] != which[order][:-1]]
    pick = order[first]
    return pick[np.isfinite(d[pick])]


def nearest_linearised_class(params, x, src, w, *, k: int = 1) -> np.ndarray:
    """Per input, the ``k`` classes ``j != i`` whose linearised boundaries are nearest to ``x``,
    nearest first: ``(z_i - z_j) / ||W^{-1/2} grad(z_i - z_j)||`` (the choice of DeepFool).

    Returns an array of shape ``(n, k)`` (``k`` is cut to ``n_classes - 1``).
    """
    eye = np.eye(params.n_classes)
    k = min(k, params.n_classes - 1)
    out = np.empty((len(x), k), np.int64)
    for c in range(0, len(x), 1024):
        sl = slice(c, c + 1024)
        fwd = forward(params, tf.constant(x[sl]))
        z = fwd.logits.numpy()
        seeds = eye[src[sl]][:, None, :] - eye[None, :, :]
        grads = vjp(params, fwd, tf.constant(np.broadcast_to(seeds, (len(z),) + seeds.shape[1:]).copy())).numpy()
        gap = z[np.arange(len(z)), src[sl]][:, None] - z
        norm = np.sqrt(np.sum(grads**2 / w, axis=2))
        est = np.where(np.arange(params.n_classes)[None] == src[sl, None], np.inf, gap / np.maximum(norm, 1e-300))
        out[sl] = np.argsort(est, axis=1, kind="stable")[:, :k]
    return out
