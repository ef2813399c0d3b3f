"""Closest flip points with categorical (one-hot) variables: sec. 5.2 of the 2019 paper.

A categorical variable with ``k`` categories is encoded by ``k`` binary features, exactly one
of which is 1 (a *group*, ``Dataset.groups``).  At a flip point every group must again be
exactly one-hot, so eqs. 1-5 gain a combinatorial part:

    min ||x_hat - x||_w   s.t.   z_i(x_hat) = z_j(x_hat),  z_i >= z_k + margin (k != i, j),
                                 lower <= x_hat <= upper on the continuous features,
                                 x_hat_G in {e_1, ..., e_k} for every group G.

For a fixed *assignment* ``a`` (one category per group) this is a continuous flip-point problem
in the other features, started from ``x_a`` (``x`` with its groups set to ``a``), and the squared
distance splits exactly into

    ||x_hat - x||_w^2 = ||x_hat - x||_w^2 over the continuous features
                        + sum over the changed groups of (w_old + w_new),

the second term being the *categorical cost* of ``a`` (2 per changed group when unweighted).
:func:`mixed_flip_points` searches over assignments:

1. **Relaxation.** One batched :func:`fliplib.closest_flip_points` call with the one-hot
   features relaxed to the box ``[0, 1]``.  The categories whose features the relaxed flip point
   raises most are the promising ones; a group the relaxation leaves (almost) untouched keeps
   its category.
2. **Candidates.** Per input, the combinations of the current category and the
   ``beam_width - 1`` most raised others of each group, by increasing number of changed groups
   (the most raised first within a number), capped at ``max_assignments``.  Each candidate
   gets a cheap *estimate* of its squared distance: its categorical cost plus the squared
   linearised distance ``|c(x_a)| / ||grad c||_{W^-1}`` of ``x_a`` to the boundary
   ``c = z_i - z_j = 0`` over the free features (:func:`fliplib.boundary.taylor_distance`,
   one batched Jacobian evaluation).
3. **Continuous part.** Candidates are solved in rounds, the best-estimated ones of every
   input in one batched solver call per round (``round_size`` per input in the first round,
   twice as many in each next one), with the categorical features fixed and the
   source class given explicitly (``x_a`` itself may be classified otherwise).
4. **Pruning.** A candidate whose categorical cost alone is at least the best squared distance
   found so far cannot win, and is never solved.  An input is done when no candidate is left.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ._checks import as_bounds, as_mask, check_feature_weights, check_points, check_within_bounds, positive_int
from .boundary import taylor_distance
from .flip import FlipResult, closest_flip_points, flip_evidence
from .options import FlipOptions
from .params import network_params

__all__ = ["MixedFlipResult", "mixed_flip_points", "one_hot_violation"]

#: Where a free feature sits exactly on a bound, the solver starts a tiny step inside
#: (this fraction of the bound range); the distance is still measured from the input.
INTERIOR_STEP = 1e-7


@dataclass
class MixedFlipResult:
    """Mixed continuous/categorical flip points and how they were found.

    Attributes
    ----------
    flip : FlipResult
        One flip point per input, exactly one-hot in every group.  ``distance`` is the full
        ``||x_hat - x||_w``; the evidence is measured on the original network, ``optimality``
        being the first-order residual of the continuous part (categorical features held at
        the winning assignment); ``n_jacobian_evals`` counts the relaxation and every solved
        candidate.
    group_names : tuple of str
        The groups, in the order of the columns of ``assignment``.
    assignment : ndarray of int, shape (n, n_groups)
        Position, within each group, of the category of the flip point.
    initial_assignment : ndarray of int, shape (n, n_groups)
        Position, within each group, of the category of the input.
    categorical_cost : ndarray, shape (n,)
        The categorical part of ``distance**2``.
    n_candidates : ndarray of int, shape (n,)
        Candidate assignments per input (after the ``max_assignments`` cap).
    n_solved : ndarray of int, shape (n,)
        Candidates whose continuous part was solved; the others were pruned (or cut by
        ``max_solved``).
    exhaustive : ndarray of bool, shape (n,)
        True where every candidate was solved or pruned by the exact bound (not cut by
        ``max_solved``).
    relaxed : FlipResult
        The relaxed flip points (one-hot features in ``[0, 1]``).
    """

    flip: FlipResult
    group_names: tuple[str, ...]
    assignment: np.ndarray
    initial_assignment: np.ndarray
    categorical_cost: np.ndarray
    n_candidates: np.ndarray
    n_solved: np.ndarray
    exhaustive: np.ndarray
    relaxed: FlipResult

    @property
    def x(self) -> np.ndarray:
        """The flip points, shape (n, n_features)."""
        return self.flip.x

    @property
    def distance(self) -> np.ndarray:
        return self.flip.distance

    @property
    def success(self) -> np.ndarray:
        return self.flip.success

    def changed_groups(self) -> pd.DataFrame:
        """Which groups differ between each input and its flip point (bool, one column per group)."""
        return pd.DataFrame(self.initial_assignment != self.assignment, columns=list(self.group_names))

    def to_frame(self) -> pd.DataFrame:
        """The evidence, one row per input, with the categorical cost and the search effort."""
        frame = self.flip.to_frame()
        frame["categorical_cost"] = self.categorical_cost
        frame["n_candidates"] = self.n_candidates
        frame["n_solved"] = self.n_solved
        frame["exhaustive"] = self.exhaustive
        return frame

    def __repr__(self) -> str:
        return (f"MixedFlipResult(inputs={len(self.assignment)}, groups={len(self.group_names)}, "
                f"success rate={self.success.mean():.4f}, solved={int(self.n_solved.sum())})")


def one_hot_violation(x, groups: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Per row of ``x``, the largest deviation from exact one-hotness over the groups.

    The largest, over the groups, of ``|x_f - round(x_f)|`` (``round`` to 0 or 1) and of
    ``|sum_G x_f - 1|``; 0 exactly when every group holds one 1 and zeros elsewhere.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    worst = np.zeros(len(x))
    for idx in groups.values():
        block = x[:, np.asarray(idx)]
        off_binary = np.max(np.minimum(np.abs(block), np.abs(block - 1.0)), axis=1)
        worst = np.maximum(worst, np.maximum(off_binary, np.abs(block.sum(axis=1) - 1.0)))
    return worst


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_groups(groups, n_features: int) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError("groups must be a non-empty mapping of group name -> feature indices (Dataset.groups)")
    names, indices, seen = [], [], set()
    for name, idx in groups.items():
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size < 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"group {name!r} must list at least two integer feature indices, got {idx!r}")
        if np.any((idx < 0) | (idx >= n_features)):
            raise ValueError(f"group {name!r} has feature indices outside [0, {n_features})")
        if seen.intersection(idx.tolist()) or len(set(idx.tolist())) != idx.size:
            raise ValueError(f"group {name!r} shares features with another group (or repeats one)")
        seen.update(idx.tolist())
        names.append(str(name))
        indices.append(idx.astype(np.int64))
    return tuple(names), tuple(indices)


def _check_group_names(kind: str, requested, names: tuple[str, ...]) -> set[str]:
    requested = {requested} if isinstance(requested, str) else set(requested)
    unknown = requested - set(names)
    if unknown:
        raise ValueError(f"{kind} names unknown groups {sorted(unknown)}; the groups are {list(names)}")
    return requested


def _current_categories(x: np.ndarray, indices) -> np.ndarray:
    """Category position per input and group; raises unless every group is exactly one-hot."""
    current = np.empty((len(x), len(indices)), dtype=np.int64)
    for g, idx in enumerate(indices):
        block = x[:, idx]
        exact = np.all((block == 0.0) | (block == 1.0), axis=1) & (block.sum(axis=1) == 1.0)
        if not np.all(exact):
            i = int(np.flatnonzero(~exact)[0])
            raise ValueError(f"input {i} is not exactly one-hot in the group at features {idx.tolist()}: {block[i]}")
        current[:, g] = np.argmax(block, axis=1)
    return current


def _allowed_categories(current, indices, fixed, names, fixed_groups, change_groups) -> list[np.ndarray]:
    """Per group, a bool array (n, k): the categories the flip point may take."""
    allowed = []
    for g, idx in enumerate(indices):
        is_current = np.arange(idx.size)[None, :] == current[:, g][:, None]
        keep = np.any(fixed[:, idx] & is_current, axis=1) | (names[g] in fixed_groups)
        ok = np.where(keep[:, None], is_current, ~fixed[:, idx] | is_current)
        if names[g] in change_groups:
            ok &= ~is_current
            if not np.all(ok.any(axis=1)):
                i = int(np.flatnonzero(~ok.any(axis=1))[0])
                raise ValueError(f"group {names[g]!r} must change for input {i}, but no other category is allowed")
        allowed.append(ok)
    return allowed


# --------------------------------------------------------------------------------------------
# Small computations
# --------------------------------------------------------------------------------------------


def _interior_start(x, lo, hi, movable):
    """``x`` moved a tiny step inside the bounds where a movable feature sits on one.

    The solver's projected dual Newton step treats a feature lying exactly on a bound as
    inactive at the first iteration; starting strictly inside lets every feature move.
    """
    finite = np.isfinite(lo) & np.isfinite(hi) & (hi > lo) & movable
    step = np.where(finite, INTERIOR_STEP * np.where(finite, hi - lo, 0.0), 0.0)
    return np.where(finite, np.clip(x, lo + step, hi - step), x)


# --------------------------------------------------------------------------------------------
# Candidate assignments
# --------------------------------------------------------------------------------------------


def _group_options(v, x_g, c0, allowed, *, beam_width: int, must_change: bool, move_tol: float) -> list[int]:
    """Categories to try for one group of one input: the current one, then the most raised."""
    others = [int(c) for c in np.argsort(-v, kind="stable") if allowed[c] and c != c0]
    if must_change:
        return others[:beam_width]
    if np.max(np.abs(v - x_g)) <= move_tol:
        return [int(c0)]
    return [int(c0)] + others[: beam_width - 1]


def _assignments(options: list[list[int]], c0, *, max_assignments: int) -> list[tuple[int, ...]]:
    """Combinations of the options by increasing number of changed groups, at most ``max_assignments``.

    ``options[g]`` lists group ``g``'s categories, most promising first; within a number of
    changes, combinations of more promising options come first.  A group whose options exclude
    its current category ``c0[g]`` (it must change) changes in every combination.
    """
    changeable = [g for g, opts in enumerate(options) if len(opts) > 1 or opts[0] != c0[g]]
    forced = {g for g, opts in enumerate(options) if c0[g] not in opts}
    found = []
    for k in range(len(forced), len(changeable) + 1):
        level = []
        for subset in itertools.combinations(changeable, k):
            if not forced <= set(subset):
                continue
            choices = [[(p, c) for p, c in enumerate(options[g]) if c != c0[g]] if g in subset else [(0, c0[g])]
                       for g in range(len(options))]
            level.extend(itertools.product(*choices))
        level.sort(key=lambda combo: sum(p for p, _ in combo))
        found.extend(tuple(c for _, c in combo) for combo in level)
        if len(found) >= max_assignments:
            break
    return found[:max_assignments]


def _next_round(inputs, estimate, eligible, quota) -> np.ndarray:
    """Per input ``i``, the ``quota[i]`` eligible candidates of smallest estimate (their indices)."""
    idx = np.flatnonzero(eligible)
    order = idx[np.lexsort((estimate[idx], inputs[idx]))]
    owner = inputs[order]
    rank = np.arange(len(order)) - np.searchsorted(owner, owner, side="left")
    return order[rank < quota[owner]]


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


def _candidates(relaxed_ok, v_all, x, current, indices, allowed, names, change_groups, *, beam_width: int,
                move_tol: float | None, max_assignments: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate assignments of every input, flattened: the input each belongs to, and its category per group."""
    owner, chosen = [], []
    for i in range(len(x)):
        tol_i = move_tol if move_tol is not None and relaxed_ok[i] else -1.0  # -1: the shortcut is off
        options = [
            _group_options(v_all[i, idx], x[i, idx], current[i, g], allowed[g][i], beam_width=beam_width,
                           must_change=names[g] in change_groups, move_tol=tol_i)
            for g, idx in enumerate(indices)
        ]
        found = _assignments(options, current[i], max_assignments=max_assignments)
        owner.extend([i] * len(found))
        chosen.extend(found)
    owner = np.asarray(owner, dtype=np.int64)
    return owner, np.asarray(chosen, dtype=np.int64).reshape(len(owner), len(indices))


def mixed_flip_points(
    model,
    x,
    target,
    *,
    groups: Mapping[str, Sequence[int]],
    lower=None,
    upper=None,
    source=None,
    fixed=None,
    fixed_groups: Sequence[str] = (),
    change_groups: Sequence[str] = (),
    feature_weights=None,
    beam_width: int = 3,
    max_assignments: int = 64,
    max_solved: int | None = None,
    round_size: int = 4,
    move_tol: float | None = 1e-3,
    progress: bool = False,
    method: str = "homotopy",
    search: str = "global",
    options: FlipOptions | dict | None = None,
    witnesses=None,
) -> MixedFlipResult:
    """Closest flip points whose one-hot groups stay exactly one-hot (sec. 5.2 of the 2019 paper).

    Parameters
    ----------
    model : keras.Model or NetworkParams
        An erf or PReLU network.
    x : array_like, shape (n, n_features) or (n_features,)
        Inputs, exactly one-hot in every group.
    target : int or array of shape (n,)
        Class ``j`` per input.
    groups : mapping of str to array of int
        Categorical variable -> indices of its one-hot features (``Dataset.groups``).
    lower, upper : float or array of shape (n_features,) or (n, n_features), optional
        Bounds of the continuous features (one-hot features always take values 0 or 1).
    source : int or array of shape (n,), optional
        Class ``i`` per input; default the predicted class.
    fixed : bool array of shape (n_features,) or (n, n_features), optional
        Features that keep their value.  Fixing a group's active feature fixes the group;
        fixing an inactive one rules that category out.
    fixed_groups : sequence of str
        Groups that keep their category ("same sex").
    change_groups : sequence of str
        Groups whose category must change ("different race").
    feature_weights : float or array of shape (n_features,), optional
        Positive weights of the distance; changing a group from category ``a`` to ``b`` costs
        ``w_a + w_b`` in squared distance.
    beam_width : int
        Categories tried per group: the current one and the ``beam_width - 1`` others the
        relaxation raises most (``beam_width`` others for a group that must change).  Use the
        largest group size to try every category.
    max_assignments : int
        Candidate assignments per input, at most (fewer changed groups first).
    max_solved : int, optional
        Stop an input after this many solved candidates (default: no limit, the search is
        exhaustive over the candidates).
    round_size : int
        Candidates per input solved in the first round; each next round solves twice as many
        (one batched solver call per round).
    move_tol : float or None
        A group whose relaxed features all stay within ``move_tol`` of the input keeps its
        category (unless it must change); None tries the beam in every group.
    progress : bool
        Show a progress bar over rounds.
    method, search, options, witnesses
        Passed to :func:`fliplib.closest_flip_points` for every continuous solve (the
        tunables are :class:`fliplib.FlipOptions`; ``witnesses``, points such as the training
        set, whose predicted class makes them starts of the global search).

    Returns
    -------
    MixedFlipResult

    Raises
    ------
    TypeError
        If ``x``, ``lower`` or ``upper`` do not hold real numbers, or ``fixed`` is not boolean.
    ValueError
        If a shape is wrong, ``x`` is ragged or not finite, an input is not exactly one-hot in a
        group, or a continuous feature lies outside its bounds (naming the input and feature).

    Notes
    -----
    What is guaranteed:

    * **Feasibility, exactly.** Every returned point is exactly one-hot in every group (the
      categorical features are copied from the assignment, never rounded), lies within the
      bounds, keeps the fixed features and fixed groups, and changes the groups that must
      change.  ``success`` additionally needs the logit tie and margins that
      :func:`fliplib.closest_flip_points` requires.
    * **Optimality over the candidates.** Where ``exhaustive`` is True, the returned point is
      the closest of the solver's answers over *all* candidate assignments of the input:
      pruning skips only candidates whose categorical cost alone reaches the best squared
      distance found, and the continuous part adds a non-negative term.  With ``beam_width`` at
      least the largest group size, ``max_assignments`` at least the number of assignments
      (the product of the numbers of allowed categories) and ``move_tol=None``, the
      candidates are all assignments: the search is then as good as brute-force enumeration
      of the assignments with the same continuous solver, and the categorical choice is
      globally optimal relative to that solver.
    * **Not guaranteed:** each continuous part is a non-convex problem solved to a first-order
      point (``optimality`` reports the residual), so the distance of an assignment is that
      of a local solution; with a narrower beam, a cap, ``move_tol`` or ``max_solved`` the
      relaxation's ranking may leave the best assignment out of the candidates (``exhaustive``
      is False only for the ``max_solved`` cut).
    """
    params = network_params(model)
    opts = FlipOptions.from_any(options)
    solver = dict(method=method, search=search, options=opts, witnesses=witnesses)
    names, indices = _check_groups(groups, params.n_features)
    fixed_groups = _check_group_names("fixed_groups", fixed_groups, names)
    change_groups = _check_group_names("change_groups", change_groups, names)
    if fixed_groups & change_groups:
        raise ValueError(f"groups {sorted(fixed_groups & change_groups)} cannot be both fixed and forced to change")
    for option, value in (("beam_width", beam_width), ("max_assignments", max_assignments), ("round_size", round_size)):
        positive_int(option, value)
    if max_solved is not None:
        positive_int("max_solved", max_solved)
    if np.ndim(target) > 1 or isinstance(target, str):
        raise ValueError("target must be a class index or one class index per input")

    x = check_points("x", x, params.n_features)
    n, d = x.shape
    categorical = np.zeros(d, dtype=bool)
    categorical[np.concatenate(indices)] = True
    lo = np.where(categorical, 0.0, as_bounds("lower", lower, n, d, -np.inf))
    hi = np.where(categorical, 1.0, as_bounds("upper", upper, n, d, np.inf))
    fix = as_mask("fixed", fixed, n, d).copy()
    w = check_feature_weights(feature_weights, d)
    current = _current_categories(x, indices)
    x = check_within_bounds(x, lo, hi)  # the continuous features (the one-hot ones lie in [0, 1])
    allowed = _allowed_categories(current, indices, fix, names, fixed_groups, change_groups)

    # 1. The relaxation: one-hot features free in [0, 1] where the category is allowed.
    relax_fixed = fix.copy()
    for idx, ok in zip(indices, allowed):
        kept = (ok.sum(axis=1) == 1) & np.any(ok & (x[:, idx] == 1.0), axis=1)
        relax_fixed[:, idx] = (~ok & (x[:, idx] == 0.0)) | kept[:, None]
    relaxed = closest_flip_points(
        params, _interior_start(x, lo, hi, ~relax_fixed), target, source=source, lower=lo, upper=hi,
        fixed=relax_fixed, feature_weights=feature_weights, **solver,
    )
    src, tgt = relaxed.source, relaxed.target
    v_all = np.where(np.isfinite(relaxed.x), relaxed.x, x)

    # 2. Candidate assignments, flattened over the inputs, with their estimates.
    owner, chosen = _candidates(relaxed.success, v_all, x, current, indices, allowed, names, change_groups,
                                beam_width=beam_width, move_tol=move_tol, max_assignments=max_assignments)
    starts = x[owner].copy()
    cost = np.zeros(len(owner))
    for g, idx in enumerate(indices):
        starts[:, idx] = 0.0
        starts[np.arange(len(owner)), idx[chosen[:, g]]] = 1.0
        changed = chosen[:, g] != current[owner, g]
        cost += np.where(changed, w[idx[chosen[:, g]]] + w[idx[current[owner, g]]], 0.0)
    movable = ~(fix[owner] | categorical)
    linearised, _ = taylor_distance(params, starts, source=src[owner], target=tgt[owner], fixed=~movable,
                                    feature_weights=w)
    estimate = cost + linearised**2

    # 3-4. Rounds of batched continuous solves, pruned by the categorical cost.
    best_d2 = np.full(n, np.inf)
    best = np.full(n, -1, dtype=np.int64)  # the winning candidate per input
    x_hat = np.full((len(owner), d), np.nan)
    solved = np.zeros(len(owner), dtype=bool)
    n_solved = np.zeros(n, dtype=np.int64)
    n_jac = relaxed.n_jacobian_evals.astype(np.int64).copy()
    n_steps = relaxed.n_homotopy_steps.astype(np.int64).copy()
    limit = np.iinfo(np.int64).max if max_solved is None else int(max_solved)
    quota = int(round_size)
    with tqdm(desc="mixed flip points (rounds)", disable=not progress, unit="round") as bar:
        while True:
            eligible = ~solved & (cost < best_d2[owner])
            batch = _next_round(owner, estimate, eligible, np.minimum(quota, limit - n_solved))
            quota *= 2
            if batch.size == 0:
                break
            rows = owner[batch]
            res = closest_flip_points(
                params, _interior_start(starts[batch], lo[rows], hi[rows], movable[batch]), tgt[rows],
                source=src[rows], lower=lo[rows], upper=hi[rows], fixed=~movable[batch],
                feature_weights=feature_weights, **solver,
            )
            x_hat[batch] = res.x
            solved[batch] = True
            n_solved += np.bincount(rows, minlength=n)
            n_jac += np.bincount(rows, weights=res.n_jacobian_evals, minlength=n).astype(np.int64)
            n_steps += np.bincount(rows, weights=res.n_homotopy_steps, minlength=n).astype(np.int64)
            d2 = np.where(res.success, np.sum(w * (res.x - x[rows]) ** 2, axis=1), np.inf)
            for r in np.argsort(d2):  # closest first, so the first improvement per input wins
                i = rows[r]
                if d2[r] < best_d2[i]:
                    best_d2[i], best[i] = d2[r], batch[r]
            bar.update()
    left = ~solved & (cost < best_d2[owner])
    exhaustive = np.bincount(owner, weights=left, minlength=n) == 0

    # 5. Evidence on the final points, the categorical features held fixed.
    pick = best.copy()
    for i in np.flatnonzero(best < 0):  # no success: report the best-estimated attempt
        tried = np.flatnonzero((owner == i) & solved)
        pick[i] = tried[np.argmin(estimate[tried])]
    x_final = x_hat[pick]
    held = fix | categorical
    ev = flip_evidence(params, starts[pick], x_final, src, tgt, lower=lo, upper=hi, fixed=held,
                       feature_weights=feature_weights, margin=opts.margin)
    ev["distance"] = np.sqrt(np.sum(w * (x_final - x) ** 2, axis=1))
    flip = FlipResult.from_evidence(x_final, ev, source=src, target=tgt, n_jacobian_evals=n_jac,
                                    n_homotopy_steps=n_steps, method=method, gap_tol=opts.gap_tol,
                                    opt_tol=opts.opt_tol)
    return MixedFlipResult(
        flip=flip, group_names=names, assignment=chosen[pick], initial_assignment=current,
        categorical_cost=cost[pick], n_candidates=np.bincount(owner, minlength=n), n_solved=n_solved,
        exhaustive=exhaustive, relaxed=relaxed,
    )
