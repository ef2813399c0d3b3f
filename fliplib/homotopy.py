"""The homotopy transformation of a network (Algorithms 1 and F2) and its path (Algorithms 2 and F3).

Algorithm 1 widens the erf of every hidden layer so that, at the input ``x``, every neuron works
away from saturation: ``erf'(c / sigma^h)`` lies in ``[tau, 2/sqrt(pi)]``, so the neuron's slope with
respect to its pre-activation ``c``, ``erf'(c / sigma^h) / sigma^h``, lies in ``[tau / sigma^h, 1]``
because ``sigma^h >= 2/sqrt(pi)`` (App. D.1: no exploding gradients, and no vanishing ones beyond
what the widths themselves impose).  It also moves the output
bias so that ``x`` itself becomes a flip point (line 13).  Algorithm 2 then walks the network
back to its original form, ``theta(t) = theta^h + t (theta^N - theta^h)`` for ``t`` from 0 to 1,
solving for the closest flip point at each step from the previous one.  Everything here is
per sample: each point of a batch has its own transformed network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from . import sqp
from .model import ERF_SLOPE
from .params import NetworkParams, forward

__all__ = [
    "HomotopyStart", "Path", "erf_gamma", "transform_erf", "transform_prelu", "flip_bias", "interpolate", "original",
    "transform", "follow_path",
]


@dataclass(frozen=True)
class HomotopyStart:
    """The transformed ("easy") networks ``N^h`` of a batch, one per sample.

    Attributes
    ----------
    scales : list of tf.Tensor
        Per hidden layer ``(n, n_k)``: ``sigma^h`` (erf, per neuron) or ``alpha^h`` (PReLU, ``(n, 1)``).
    output_bias : tf.Tensor, shape (n, n_classes)
        ``b^{h(m)}`` that makes each ``x`` a flip point of ``N^h``.
    """

    scales: list
    output_bias: tf.Tensor


def erf_gamma(tau: float) -> float:
    """``gamma = sqrt(log(2 / (tau sqrt(pi))))`` of Algorithm 1, line 1: ``erf'(gamma) = tau``."""
    if not 0 < tau < ERF_SLOPE:
        raise ValueError(f"tau must lie in (0, 2/sqrt(pi)), got {tau}")
    return math.sqrt(math.log(ERF_SLOPE / tau))


def transform_erf(params: NetworkParams, x: tf.Tensor, tau: float) -> list:
    """Per-sample widths ``sigma^h`` of Algorithm 1, lines 1-12.

    For each hidden layer ``k`` (first to last), with ``c = y^{(k-1)} W_k + b_k`` computed
    through the already transformed layers,
    ``sigma^h_k = max(2/sqrt(pi), ||c||_inf / gamma)`` (line 4); when that exceeds
    ``2/(tau sqrt(pi))`` the width is set per neuron, ``max(2/sqrt(pi), |c_t| / gamma)``
    (lines 5-10).

    Returns
    -------
    list of tf.Tensor
        ``sigma^h`` per hidden layer, shape ``(n, n_k)`` (per neuron; uniform rows where line 4 sufficed).
    """
    if params.activation != "erf":
        raise ValueError("transform_erf needs an erf network; use transform_prelu for PReLU")
    gamma = erf_gamma(tau)
    ceiling = ERF_SLOPE / tau
    y = tf.convert_to_tensor(x, tf.float64)
    sigmas = []
    for w, b in zip(params.weights[:-1], params.biases[:-1]):
        c = y @ w + b
        uniform = tf.maximum(ERF_SLOPE, tf.reduce_max(tf.abs(c), axis=1, keepdims=True) / gamma)
        per_neuron = tf.maximum(ERF_SLOPE, tf.abs(c) / gamma)
        sigma = tf.where(uniform > ceiling, per_neuron, tf.broadcast_to(uniform, tf.shape(c)))
        sigmas.append(sigma)
        y = tf.math.erf(c / sigma)
    return sigmas


def transform_prelu(params: NetworkParams, x: tf.Tensor, tau: float) -> list:
    """Per-sample slopes ``alpha^h`` of Algorithm F2, lines 1-8.

    A layer in which some neuron is inactive at ``x`` (a negative pre-activation; our reading
    of the test ``||-y W - b||_inf > 0`` of line 4) gets the slope ``tau``; the others keep
    their own ``alpha``.

    Returns
    -------
    list of tf.Tensor, each ``(n, 1)``
    """
    if params.activation != "prelu":
        raise ValueError("transform_prelu needs a PReLU network")
    y = tf.convert_to_tensor(x, tf.float64)
    alphas = []
    for w, b, alpha in zip(params.weights[:-1], params.biases[:-1], params.scales):
        c = y @ w + b
        has_negative = tf.reduce_any(c < 0, axis=1, keepdims=True)
        a = tf.where(has_negative, tf.constant(tau, tf.float64), tf.constant(alpha, tf.float64))
        alphas.append(a)
        y = tf.where(c >= 0, c, a * c)
    return alphas


def flip_bias(logits: tf.Tensor, source: tf.Tensor, target: tf.Tensor, margin: float) -> tf.Tensor:
    """Closed-form solution of the QP of Algorithm 1, line 13.

    ``min ||delta||_2`` such that the logits ``u + delta`` satisfy ``(u + delta)_i = (u + delta)_j``
    and ``(u + delta)_i >= (u + delta)_l + margin`` for every other class ``l``.

    Derivation: with the common value ``v = (u + delta)_i``, the cheapest ``delta`` is
    ``delta_i = v - u_i``, ``delta_j = v - u_j`` and ``delta_l = min(0, v - margin - u_l)``, so
    ``v`` minimises the convex piecewise quadratic
    ``(u_i - v)^2 + (u_j - v)^2 + sum_l max(0, u_l + margin - v)^2``.  Its stationarity
    condition gives ``v = (u_i + u_j + sum_{l in S} (u_l + margin)) / (2 + |S|)`` where ``S``
    holds the classes with ``u_l + margin > v``; ``S`` is a leading run of the others sorted
    by ``u_l`` (largest first), and the right run is the one consistent with its own ``v``,
    found as in the projection onto a simplex.

    Parameters
    ----------
    logits : tf.Tensor, shape (n, n_classes)
        ``u = y^{(m-1)} W_m + b^{N(m)}`` at ``x`` in the transformed network.
    source, target : tf.Tensor of int, shape (n,)
        ``i`` and ``j``.
    margin : float
        The margin of the inequalities (eq. 4).

    Returns
    -------
    tf.Tensor, shape (n, n_classes)
        ``delta = b^{h(m)} - b^{N(m)}``.
    """
    u = tf.convert_to_tensor(logits, tf.float64)
    n_classes = u.shape[1]
    i_hot = tf.one_hot(source, n_classes, dtype=tf.float64)
    j_hot = tf.one_hot(target, n_classes, dtype=tf.float64)
    pair_sum = tf.reduce_sum(u * (i_hot + j_hot), axis=1)
    others = 1.0 - i_hot - j_hot
    # Sort the other classes' u_l + margin, largest first; i and j go last as -inf.
    w = tf.where(others > 0, u + margin, tf.constant(-math.inf, tf.float64))
    w_sorted = tf.sort(w, axis=1, direction="DESCENDING")[:, : n_classes - 2]
    finite = tf.where(tf.math.is_finite(w_sorted), w_sorted, tf.zeros_like(w_sorted))
    counts = tf.range(0, n_classes - 1, dtype=tf.float64)  # |S| = 0 .. n_classes - 2
    cum = tf.concat([tf.zeros_like(pair_sum)[:, None], tf.cumsum(finite, axis=1)], axis=1)
    v_candidates = (pair_sum[:, None] + cum) / (2.0 + counts)
    # Run r is consistent when its last member lies above v_r and the next one does not.
    inf_col = tf.fill([tf.shape(pair_sum)[0], 1], tf.constant(math.inf, tf.float64))
    ninf_col = -inf_col
    last_in = tf.concat([inf_col, w_sorted], axis=1)
    first_out = tf.concat([w_sorted, ninf_col], axis=1)
    consistent = (last_in >= v_candidates) & (first_out <= v_candidates)
    first = tf.argmax(tf.cast(consistent, tf.int32), axis=1)
    v = tf.gather(v_candidates, first, axis=1, batch_dims=1)
    delta_pair = (v[:, None] - u) * (i_hot + j_hot)
    delta_others = tf.minimum(0.0, v[:, None] - margin - u) * others
    return delta_pair + delta_others


def original(params: NetworkParams, n: int) -> HomotopyStart:
    """The untransformed network as a (trivial) homotopy start: ``method="direct"``, eta = 1."""
    # Per-neuron widths, the same shape as Algorithm 1's, so one compiled solver serves both.
    widths = [tf.fill((n, int(w.shape[1])), tf.constant(s, tf.float64)) for s, w in zip(params.scales, params.weights)]
    return HomotopyStart(scales=widths, output_bias=tf.broadcast_to(params.biases[-1], (n, params.n_classes)))


def interpolate(params: NetworkParams, start: HomotopyStart, t: tf.Tensor, *, schedule: str = "linear"):
    """The network at homotopy parameter ``t`` (Algorithm 2 lines 4-5, Algorithm F3 lines 4-5).

    ``theta(t) = theta^h + t (theta^N - theta^h)`` for the widths (or slopes) and the output bias;
    ``t = k / eta`` is the uniform schedule of the paper, ``t = 1`` the original network.

    Parameters
    ----------
    t : tf.Tensor, shape (n,)
        One homotopy parameter per sample.
    schedule : {"linear", "inverse"}
        ``"linear"`` moves ``sigma`` linearly, as the paper does.  ``"inverse"`` moves ``1/sigma``
        linearly instead, so that the Lipschitz bound of eq. 15, which is proportional to
        ``1/sigma`` per layer, changes by the same amount at every step (App. D.1 ties the step
        size to that change); for PReLU slopes both are linear.

    Returns
    -------
    scales : list of tf.Tensor
    output_bias : tf.Tensor, shape (n, n_classes)
    """
    if schedule not in ("linear", "inverse"):
        raise ValueError(f"schedule must be 'linear' or 'inverse', got {schedule!r}")
    t = tf.cast(tf.convert_to_tensor(t), tf.float64)[:, None]
    if schedule == "inverse" and params.activation == "erf":
        # t = 1 returns sigma^N itself, not 1 / (1 / sigma^N).
        scales = [tf.where(t >= 1.0, tf.constant(s_n, tf.float64) + 0.0 * s_h, 1.0 / ((1.0 - t) / s_h + t / s_n))
                  for s_h, s_n in zip(start.scales, params.scales)]
    else:
        # (1 - t) a + t b (rather than a + t (b - a)) gives the original network exactly at t = 1.
        scales = [(1.0 - t) * s_h + t * s_n for s_h, s_n in zip(start.scales, params.scales)]
    bias = (1.0 - t) * start.output_bias + t * params.biases[-1]
    return scales, bias


def transform(params: NetworkParams, x0: np.ndarray, src: np.ndarray, tgt: np.ndarray, *, tau: float,
              margin: float) -> HomotopyStart:
    """The easy network ``N^h`` of each problem: Algorithm 1 (erf) or F2 (PReLU), and line 13."""
    x0_t = tf.constant(x0)
    if params.activation == "erf":
        scales = transform_erf(params, x0_t, tau)
    else:
        scales = transform_prelu(params, x0_t, tau)
    logits = forward(params, x0_t, scales=scales).logits
    bias = params.biases[-1] + flip_bias(logits, tf.constant(src), tf.constant(tgt), margin)
    return HomotopyStart(scales=scales, output_bias=bias)


class Path(NamedTuple):
    """What :func:`follow_path` returns, one row per problem."""

    final: sqp.FinalStage  # F on the original network, from the path's last flip point
    n_steps: np.ndarray  # accepted homotopy steps
    stages: list  # with ``record``: per accepted step, (problem indices, t, flip points, Jacobian evaluations so far)


def follow_path(params: NetworkParams, step_fn, problems: sqp.Problems, *, eta: int, adaptive: bool, tau: float,
                schedule: str, margin: float, path_tol: float, inner_iter: int, gap_tol: float, xtol: float,
                max_iter: int, record: bool = False) -> Path:
    """Algorithm 2 (Algorithm F3 for PReLU networks) for a batch, with the adaptive steps of App. D.5.

    Each problem walks its own path from ``N^h`` (where ``x`` is a flip point) to ``N``; every
    round advances every unfinished path by one step of its own length, so one compiled SQP
    step serves problems at different ``t``.  With ``adaptive``, a step whose flip point is not
    found within ``inner_iter`` iterations is retreated from and halved, a successful one
    doubles the next; after too many halvings (below ``1 / (eta 2^8)``) the path is given up
    and the original network is solved from the last flip point (App. D.4).
    """
    n = len(problems.x0)
    start = transform(params, problems.x0, problems.src, problems.tgt, tau=tau, margin=margin)  # line 1
    state = sqp.initial_state(problems, params.n_classes)  # line 2: x_hat^0 = x, a flip point of N^h
    t, h = np.zeros(n), np.full(n, 1.0 / eta)
    n_steps, n_jac, stages = np.zeros(n, np.int64), np.zeros(n, np.int64), []
    h_min = 1.0 / (eta * 2.0**8)  # eight halvings of the first step: the path is given up
    for _ in range(2 * eta * (1 + 8 * adaptive)):  # line 3: for k = 1, ..., eta (adaptive: until t = 1)
        t_try = np.where(1.0 - (t + h) <= 1e-12, 1.0, np.minimum(1.0, t + h))  # line 4: t = k / eta
        on_path = np.flatnonzero(t_try < 1.0)
        if on_path.size == 0:
            break
        scales, bias = interpolate(params, _take(start, on_path), t_try[on_path], schedule=schedule)  # line 5
        sub = problems.take(on_path)
        stage_state = sqp.SQPState(*(np.asarray(a)[on_path] for a in state))
        stage_state, found, jac = sqp.solve_stage(params, step_fn, sub, stage_state, sqp.StageNetwork(tuple(scales), bias),
                                                  margin=margin, path_tol=path_tol, inner_iter=inner_iter)  # line 6
        n_jac[on_path] += jac
        accept = found | (not adaptive)
        state = _update(state, on_path, stage_state, accept, params.activation == "prelu", problems)
        ok, back = on_path[accept], on_path[~accept]
        t[ok], n_steps[ok] = t_try[ok], n_steps[ok] + 1
        if record:
            stages.append((ok, t[ok].copy(), state.x[ok].copy(), n_jac[ok].copy()))
        if adaptive:  # App. D.5
            h[ok] = np.minimum(2.0 * h[ok], 1.0 - t[ok])
            h[back] *= 0.5
            t[back[h[back] < h_min]] = 1.0  # give up the path: next, the original network
    final = sqp.solve_final(params, step_fn, problems, state, margin=margin, gap_tol=gap_tol, xtol=xtol,
                            max_iter=max_iter, watchdog=params.activation == "prelu")  # line 6, k = eta
    return Path(final=final._replace(n_jac=final.n_jac + n_jac), n_steps=n_steps, stages=stages)


def _take(start: HomotopyStart, idx) -> HomotopyStart:
    return HomotopyStart(scales=[tf.gather(s, idx) for s in start.scales], output_bias=tf.gather(start.output_bias, idx))


def _update(state: sqp.SQPState, idx, stage_state: sqp.SQPState, accept, reset_radius: bool, problems):
    """Write a stage's state back: accepted problems keep their new flip point, retreating ones
    return to the last one (``x_prev`` holds no flip point for them); both start a new stage."""
    arrays = [np.array(a) for a in state]
    for a, v in zip(arrays, stage_state):
        a[idx] = v
    x = arrays[0]
    back = idx[~accept]
    x[back] = np.asarray(state.x)[back]
    return sqp.new_stage(sqp.SQPState(*arrays), idx, reset_radius=reset_radius, radius0=sqp.trust_radius0(problems))
