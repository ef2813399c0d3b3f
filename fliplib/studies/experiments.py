"""Experiments on the homotopy method: the path of Algorithm 2, and solvers side by side.

- :func:`homotopy_network`: the intermediate network ``N^k`` of Algorithm 2 (lines 4-6) for one input;
- :func:`homotopy_path`: the flip points ``x_hat^{c,k}``, ``k = 0..eta``, that Algorithm 2 passes through;
- :func:`neuron_slopes`: per hidden layer, the range of the neurons' slopes at a batch of inputs;
- :func:`runner_up_classes`: the predicted class and the runner-up, a natural source/target pair;
- :func:`is_flip_point`: the success rule of :func:`fliplib.closest_flip_points`, for points from elsewhere;
- :func:`compare_methods`: success rate, distance and time of several solvers on the same problems.

The solver returns only the end of the homotopy path.  To recover the path we use a property
of Algorithm 1: the transformed network does not depend on the network's own widths, and the
new output bias of line 13 is the projection of the old one onto a convex set, so the start
``N^h`` computed from ``N^k`` is the start computed from ``N``.  Hence ``k`` uniform homotopy
steps from ``N^h`` to ``N^k`` are exactly the first ``k`` of the ``eta`` steps from ``N^h`` to
``N``, and the solver run on ``N^k`` with ``eta=k`` ends at ``x_hat^{c,k}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .. import homotopy, sqp
from .._checks import check_distinct, class_indices, positive_int
from ..baselines import numpy_logits, slsqp_flip_point
from ..flip import closest_flip_points, flip_evidence, status_from_evidence
from ..params import NetworkParams, forward, network_params

__all__ = [
    "HomotopyPath",
    "homotopy_network",
    "homotopy_path",
    "neuron_slopes",
    "runner_up_classes",
    "is_flip_point",
    "compare_methods",
]


def _one_point(params: NetworkParams, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.shape != (params.n_features,):
        raise ValueError(f"x must be one input of shape ({params.n_features},), got {np.shape(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x holds NaN or inf values")
    return x


def _check_pair(params: NetworkParams, source: int, target: int) -> tuple[int, int]:
    source, target = int(source), int(target)
    for name, c in (("source", source), ("target", target)):
        if not 0 <= c < params.n_classes:
            raise ValueError(f"{name} class {c} is not in [0, {params.n_classes})")
    if source == target:
        raise ValueError(f"source and target are both class {source}; a flip point needs two classes")
    return source, target


def homotopy_network(model, x, source: int, target: int, t: float, *, tau: float = 1e-5,
                     margin: float = 1e-3) -> NetworkParams:
    """The network ``N^k`` at homotopy parameter ``t = k / eta`` for one input (Algorithm 2, lines 4-6).

    ``t = 0`` is the transformed network ``N^h`` of Algorithm 1 (PReLU: Algorithm F2), for which
    ``x`` is a flip point between ``source`` and ``target``; ``t = 1`` is the original network.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n_features,)
    source, target : int
        Classes ``i`` and ``j``.
    t : float
        Homotopy parameter in ``[0, 1]``.
    tau, margin : float
        As for :func:`fliplib.closest_flip_points`.

    Returns
    -------
    NetworkParams
        The original weights, the widths (or slopes) ``sigma^k`` and the output bias ``b^{k(m)}``.

    Raises
    ------
    ValueError
        If Algorithm 1 gives some layer per-neuron widths (lines 5-10): ``NetworkParams`` holds
        one width per layer.  A smaller ``tau`` keeps the widths uniform.
    """
    params = network_params(model)
    x = _one_point(params, x)
    source, target = _check_pair(params, source, target)
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    x_t = tf.constant(x[None, :])
    if params.activation == "erf":
        scales = homotopy.transform_erf(params, x_t, tau)
    else:
        scales = homotopy.transform_prelu(params, x_t, tau)
    uniform = []
    for k, s in enumerate(scales, start=1):
        s = s.numpy().reshape(-1)
        if np.ptp(s) > 1e-12 * np.max(np.abs(s)):
            raise ValueError(
                f"Algorithm 1 gives hidden layer {k} per-neuron widths at this input (tau={tau}); "
                "NetworkParams holds one width per layer, so use a smaller tau"
            )
        uniform.append(tf.constant([[s[0]]], tf.float64))
    logits = forward(params, x_t, scales=scales).logits
    bias = params.biases[-1] + homotopy.flip_bias(logits, tf.constant([source]), tf.constant([target]), margin)
    start = homotopy.HomotopyStart(scales=uniform, output_bias=bias)
    scales_t, bias_t = homotopy.interpolate(params, start, tf.constant([float(t)], tf.float64))
    return NetworkParams(
        weights=params.weights,
        biases=params.biases[:-1] + (bias_t[0],),
        activation=params.activation,
        scales=tuple(float(s.numpy().reshape(-1)[0]) for s in scales_t),
    )


def is_flip_point(evidence: Mapping, *, gap_tol: float = 1e-6) -> np.ndarray:
    """The success rule of :func:`fliplib.closest_flip_points` applied to :func:`fliplib.flip_evidence`.

    A point is a flip point when the network output is finite, ``|z_i - z_j| <= tol``, every
    other logit lies more than ``tol`` below ``z_i`` and no bound is violated, with
    ``tol = gap_tol * max(1, |z_i|)``.  (First-order optimality is reported, not required.)

    Returns
    -------
    ndarray of bool
    """
    evidence = {key: np.asarray(value) for key, value in evidence.items()}
    evidence.setdefault("optimality", np.zeros_like(evidence["logit_gap"], dtype=float))  # not required here
    return status_from_evidence(evidence, gap_tol=gap_tol, opt_tol=np.inf) <= 1


@dataclass(frozen=True)
class HomotopyPath:
    """The flip points Algorithm 2 passes through for one input, one row per step ``k = 0..eta``.

    Attributes
    ----------
    t : ndarray, shape (eta + 1,)
        Homotopy parameter ``k / eta``.
    x : ndarray, shape (eta + 1, n_features)
        ``x_hat^{c,k}``, the flip point of ``N^k``; ``x_hat^{c,0} = x``.
    distance : ndarray
        ``||x_hat^{c,k} - x||_2``.
    logit_gap : ndarray
        ``|z_i - z_j|`` of ``N^k`` at ``x_hat^{c,k}`` (is the path feasible?).
    original_gap : ndarray
        ``|z_i - z_j|`` of the original network at ``x_hat^{c,k}`` (how far along is the path?).
    success : ndarray of bool
        ``x_hat^{c,k}`` is a flip point of ``N^k`` (the rule of :func:`is_flip_point`).
    scales : ndarray, shape (eta + 1, n_hidden)
        Widths (or slopes) of ``N^k``.
    output_bias : ndarray, shape (eta + 1, n_classes)
        Output bias of ``N^k``.
    n_jacobian_evals : ndarray of int
        Jacobian evaluations the solver spent reaching ``x_hat^{c,k}`` from ``x``.
    """

    t: np.ndarray
    x: np.ndarray
    distance: np.ndarray
    logit_gap: np.ndarray
    original_gap: np.ndarray
    success: np.ndarray
    scales: np.ndarray
    output_bias: np.ndarray
    n_jacobian_evals: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per homotopy step."""
        return pd.DataFrame({
            "step k": np.arange(len(self.t)),
            "t": self.t,
            "distance": self.distance,
            "logit gap of N^k": self.logit_gap,
            "logit gap of N": self.original_gap,
            "flip point of N^k": self.success,
            "Jacobian evaluations": self.n_jacobian_evals,
        }).set_index("step k")


def homotopy_path(model, x, source: int, target: int, *, eta: int, tau: float = 1e-5, margin: float = 1e-3,
                  max_iter: int = 300, inner_iter: int = 20, path_tol: float = 1e-4) -> HomotopyPath:
    """The path ``x_hat^{c,0} = x, x_hat^{c,1}, ..., x_hat^{c,eta}`` of Algorithm 2 with uniform steps.

    One call of :func:`fliplib.homotopy.follow_path` (``adaptive=False``) records the flip point
    of every stage: the stage networks ``N^k`` are those of :func:`homotopy_network`, and step
    ``k < eta`` counts as found when its relative logit gap is below ``path_tol`` (the stage
    rule of the solver); the last point, on the original network, is held to the solver's own
    ``gap_tol = 1e-6``.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n_features,)
    source, target : int
    eta : int
        Number of uniform steps.
    tau, margin, max_iter, inner_iter, path_tol
        As for :class:`fliplib.FlipOptions`.

    Returns
    -------
    HomotopyPath
    """
    params = network_params(model)
    x = _one_point(params, x)
    source, target = _check_pair(params, source, target)
    positive_int("eta", eta)
    nets = [homotopy_network(params, x, source, target, k / eta, tau=tau, margin=margin) for k in range(eta + 1)]
    inf = np.full((1, len(x)), np.inf)
    problems = sqp.Problems(x[None], -inf, inf, np.ones((1, len(x))), np.array([source]), np.array([target]))
    step = sqp.sqp_step(params.activation, params.n_classes, params.n_classes - 1, len(params.weights))
    path = homotopy.follow_path(params, step, problems, eta=eta, adaptive=False, tau=tau, schedule="linear",
                                margin=margin, path_tol=path_tol, inner_iter=inner_iter, gap_tol=1e-6, xtol=1e-4,
                                max_iter=max_iter, record=True)
    points = np.array([x] + [stage[2][0] for stage in path.stages] + [path.final.x[0]])
    n_jac = np.array([0] + [int(stage[3][0]) for stage in path.stages] + [int(path.final.n_jac[0])])
    gaps, ok = [], []
    for k, (net, point) in enumerate(zip(nets, points)):
        ev = flip_evidence(net, x[None, :], point[None, :], [source], [target], margin=margin)
        gaps.append(float(ev["logit_gap"][0]))
        ok.append(bool(is_flip_point(ev, gap_tol=1e-6 if k == eta else path_tol)[0]))
    z = numpy_logits(params, points)
    return HomotopyPath(
        t=np.arange(eta + 1) / eta,
        x=points,
        distance=np.linalg.norm(points - x, axis=1),
        logit_gap=np.array(gaps),
        original_gap=np.abs(z[:, source] - z[:, target]),
        success=np.array(ok),
        scales=np.array([net.scales for net in nets]),
        output_bias=np.array([net.biases[-1].numpy() for net in nets]),
        n_jacobian_evals=n_jac,
    )


def neuron_slopes(model, x, *, scales=None) -> pd.DataFrame:
    """Per hidden layer, the smallest and largest slope of the neurons over a batch of inputs.

    The slope of a neuron is the derivative of its output with respect to its pre-activation
    ``a``: ``erf'(a / sigma) / sigma`` for erf (``erf'(u) = 2 / sqrt(pi) exp(-u^2)``), ``1`` or
    ``alpha`` for PReLU.  These are the diagonal factors of the layer Jacobians of eq. 12.
    For erf, the columns ``erf'(u)`` give the derivative at ``u = a / sigma`` as well, the
    quantity that line 1 of Algorithm 1 bounds below by ``tau``.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n, n_features)
    scales : list of tensors, optional
        Per-sample widths (e.g. :func:`fliplib.homotopy.transform_erf`), as for
        :func:`fliplib.params.forward`.  Default: the network's own.

    Returns
    -------
    DataFrame, one row per hidden layer (1-based)
        ``smallest slope``, ``largest slope``, and for erf ``smallest erf'(u)``, ``largest erf'(u)``.
    """
    params = network_params(model)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != params.n_features:
        raise ValueError(f"x must have shape (n, {params.n_features}), got {x.shape}")
    widths = params.default_scales(len(x)) if scales is None else scales
    slopes = forward(params, x, scales=widths).slopes
    rows = []
    for slope, width in zip(slopes, widths):
        slope = slope.numpy()
        row = {"smallest slope": slope.min(), "largest slope": slope.max()}
        if params.activation == "erf":
            derivative = slope * np.asarray(width)
            row.update({"smallest erf'(u)": derivative.min(), "largest erf'(u)": derivative.max()})
        rows.append(row)
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="hidden layer"))


def runner_up_classes(model, x) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class and the class with the second-largest logit, per input.

    Returns
    -------
    source, target : ndarray of int, shape (n,)
    """
    z = numpy_logits(model, x)
    order = np.argsort(-z, axis=1, kind="stable")
    return order[:, 0], order[:, 1]


def compare_methods(model, x, target, *, methods: Mapping[str, Mapping], source=None, lower=None, upper=None,
                    n_slsqp: int = 0, margin: float = 1e-3, gap_tol: float = 1e-6,
                    progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Solve the same closest-flip-point problems with several solvers and tabulate the outcome.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : ndarray, shape (n, n_features)
    target : ndarray of int, shape (n,)
    methods : mapping of str to mapping
        A label per solver, and how to call :func:`fliplib.closest_flip_points` for it:
        ``method`` and ``search`` (default ``"local"``: the table compares the local methods,
        the direct solve and the homotopy), and any :class:`fliplib.FlipOptions` field, for example
        ``{"direct": {"method": "direct"}, "eta = 5": {"adaptive": False, "eta": 5}}``.
    source : ndarray of int, shape (n,), optional
        Default: the predicted classes.
    lower, upper : float or ndarray, optional
        Bounds, passed to every solver.
    n_slsqp : int
        Also solve the first ``n_slsqp`` problems with SciPy's SLSQP
        (:func:`fliplib.baselines.slsqp_flip_point`, one at a time, with one BLAS thread, its
        fastest setting); its points are clipped to the bounds and judged by
        :func:`is_flip_point`, as the others are.
    margin, gap_tol : float
        As for :func:`fliplib.closest_flip_points`.
    progress : bool
        Show a progress bar over the solvers.

    Returns
    -------
    table : DataFrame, one row per solver
        ``problems``; ``success rate``; ``median distance`` (of its flip points);
        ``median ratio to best`` (its distance over the smallest distance any solver found for
        the same problem, over its flip points); ``best found`` (share of its problems on which it
        came within 0.1% of that smallest distance); ``seconds per problem`` (wall clock; a
        one-problem call beforehand keeps TensorFlow's compilation out of it); ``iterations``
        (mean Jacobian evaluations, or SLSQP iterations).
    problems : DataFrame, one row per solver and problem
        ``method``, ``problem``, ``success``, ``distance``, ``status`` (SLSQP: -2).
    """
    params = network_params(model)
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target).reshape(-1)
    if x.ndim != 2 or len(target) != len(x):
        raise ValueError(f"x must have shape (n, n_features) and target shape (n,), got {x.shape} and {target.shape}")
    if source is None:
        source = np.argmax(numpy_logits(params, x), axis=1)
    if not methods and n_slsqp <= 0:
        raise ValueError("give at least one method (or n_slsqp > 0)")
    if n_slsqp > 0 and "SLSQP" in methods:
        raise ValueError("the label 'SLSQP' names SciPy's rows (n_slsqp): give that method another label")
    source = class_indices("source", source, len(x), params.n_classes)
    target = class_indices("target", target, len(x), params.n_classes)
    check_distinct(source, target[:, None])
    n = len(x)
    n_slsqp = int(min(max(n_slsqp, 0), n))
    bounds = dict(lower=lower, upper=upper)
    frames, timing = [], {}
    if methods:  # compile the solver's step once, outside the timing (per-input bounds: the first input's)
        first = {key: value if value is None or np.ndim(value) < 2 else np.asarray(value)[:1] for key, value in bounds.items()}
        closest_flip_points(params, x[:1], target[:1], source=source[:1], method="direct", search="local", **first,
                            options=dict(max_iter=1))
    for label, kwargs in tqdm(methods.items(), desc="solvers", disable=not progress):
        kwargs = dict(kwargs)
        top = {"search": "local", **{key: kwargs.pop(key) for key in ("method", "search") if key in kwargs}}
        options = {**kwargs.pop("options", {}), **kwargs, "margin": margin, "gap_tol": gap_tol}
        start = time.perf_counter()
        res = closest_flip_points(params, x, target, source=source, **bounds, **top, options=options)
        timing[label] = (time.perf_counter() - start) / n
        frames.append(pd.DataFrame({
            "method": label, "problem": np.arange(n), "success": res.success, "distance": res.distance,
            "status": res.status, "iterations": res.n_jacobian_evals,
        }))
    if n_slsqp:
        lo = np.broadcast_to(-np.inf if lower is None else np.asarray(lower, dtype=float), x.shape)
        hi = np.broadcast_to(np.inf if upper is None else np.asarray(upper, dtype=float), x.shape)
        # One BLAS thread: SLSQP's small matrices run fastest so (a second thread only spins).
        with threadpool_limits(limits=1, user_api="blas"):
            start = time.perf_counter()
            found = [
                slsqp_flip_point(params, x[p], int(source[p]), int(target[p]), margin=margin,
                                 lower=None if lower is None else lo[p], upper=None if upper is None else hi[p])
                for p in range(n_slsqp)
            ]
            timing["SLSQP"] = (time.perf_counter() - start) / n_slsqp
        x_hat = np.clip(np.array([f["x"] for f in found]), lo[:n_slsqp], hi[:n_slsqp])
        ev = flip_evidence(params, x[:n_slsqp], x_hat, source[:n_slsqp], target[:n_slsqp], lower=lo[:n_slsqp],
                           upper=hi[:n_slsqp], margin=margin)
        frames.append(pd.DataFrame({
            "method": "SLSQP", "problem": np.arange(n_slsqp), "success": is_flip_point(ev, gap_tol=gap_tol),
            "distance": ev["distance"], "status": -2, "iterations": [f["nit"] for f in found],
        }))
    problems = pd.concat(frames, ignore_index=True)
    found_at = problems["distance"].where(problems["success"])
    best = found_at.groupby(problems["problem"]).transform("min")
    problems["ratio to best"] = found_at / best
    rows = {}
    for label, group in problems.groupby("method", sort=False):
        ok = group["success"]
        rows[label] = {
            "problems": len(group),
            "success rate": ok.mean(),
            "median distance": group["distance"][ok].median(),
            "median ratio to best": group["ratio to best"][ok].median(),
            "best found": (group["ratio to best"] <= 1.001).mean(),
            "seconds per problem": timing[label],
            "iterations": group["iterations"].mean(),
        }
    return pd.DataFrame.from_dict(rows, orient="index"), problems.drop(columns="ratio to best")
