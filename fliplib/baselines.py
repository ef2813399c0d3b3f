"""Reference methods to compare flip points with.

- :func:`slsqp_flip_point`: the "off-the-shelf solver F" of eq. 6, SciPy's SLSQP on eqs. 1-5,
  one point at a time (the independent solver our tests and benchmarks check against);
- :func:`deepfool_boundary_point`: the first-order (DeepFool-style) linearisation, iterated
  until the class changes, then bisected onto the boundary;
- :func:`random_boundary_point`: random-direction search with bisection.

These are deliberately simple and per point: they are yardsticks, not the library's solvers.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ._checks import positive_int
from .params import NumpyNetwork, bisect_boundary, numpy_network

__all__ = ["numpy_logits", "numpy_logit_jacobian", "slsqp_flip_point", "deepfool_boundary_point", "random_boundary_point"]


def numpy_logits(model, x: np.ndarray) -> np.ndarray:
    """Logits in plain NumPy float64 (an implementation independent of TensorFlow; eqs. 8-9).

    The forward pass of :class:`fliplib.params.NumpyNetwork`.
    """
    return numpy_network(model).logits(x)


def numpy_logit_jacobian(model, x: np.ndarray, *, accumulation: str = "reverse") -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(C,)`` and their Jacobian ``(C, d)`` at one point (eqs. 11-12).

    ``accumulation="reverse"`` multiplies the factors of eq. 12 from the output end (``C`` rows
    through every layer, the cheaper order when there are fewer classes than features, as
    everywhere in this book); ``"forward"`` from the input end, as eq. 12 is written (``d``
    columns through every layer).  Both give the same matrix; the tests check each against
    TensorFlow's autodiff.
    """
    return _numpy_jacobian(numpy_network(model), np.asarray(x, dtype=float), accumulation)


def _numpy_jacobian(net: NumpyNetwork, x: np.ndarray, accumulation: str = "reverse"):
    if accumulation not in ("reverse", "forward"):
        raise ValueError(f"accumulation must be 'reverse' or 'forward', got {accumulation!r}")
    logits, slopes = net.forward(x)
    if accumulation == "forward":
        jac = np.eye(len(x))
        for w, slope in zip(net.weights[:-1], slopes):
            jac = slope[:, None] * (w.T @ jac)
        return logits, net.weights[-1].T @ jac
    rows = net.weights[-1].T  # (C, n_{m-1})
    for w, slope in zip(reversed(net.weights[:-1]), reversed(slopes)):
        rows = (rows * slope) @ w.T
    return logits, rows


def slsqp_flip_point(model, x, source: int, target: int, *, lower=None, upper=None, x_start=None,
                     margin: float = 1e-3, maxiter: int = 200, ftol: float = 1e-10) -> dict:
    """Closest flip point between ``source`` and ``target`` by SciPy's SLSQP (one point).

    The constraints and their gradients come from a NumPy float64 forward pass and the
    reverse-accumulated logit Jacobian (``C`` rows, :func:`numpy_logit_jacobian`), one
    evaluation per new iterate; the weights are converted once per call.

    Returns
    -------
    dict
        ``x`` (the point), ``distance``, ``success`` (SLSQP's own flag), ``nit``, ``message``.
    """
    net = numpy_network(model)
    positive_int("maxiter", maxiter)
    x = np.asarray(x, dtype=float)
    d = x.size
    others = [k for k in range(net.n_classes) if k not in (source, target)]
    cache = {}

    def evaluate(v):
        key = v.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = _numpy_jacobian(net, v, "reverse")
        return cache[key]

    constraints = [{
        "type": "eq",
        "fun": lambda v: np.array([evaluate(v)[0][source] - evaluate(v)[0][target]]),
        "jac": lambda v: (evaluate(v)[1][source] - evaluate(v)[1][target])[None, :],
    }]
    if others:
        constraints.append({
            "type": "ineq",
            "fun": lambda v: evaluate(v)[0][source] - evaluate(v)[0][others] - margin,
            "jac": lambda v: evaluate(v)[1][source][None, :] - evaluate(v)[1][others],
        })
    lo = np.broadcast_to(-np.inf if lower is None else lower, (d,))
    hi = np.broadcast_to(np.inf if upper is None else upper, (d,))
    bounds = None if lower is None and upper is None else list(zip(lo, hi))
    start = x if x_start is None else np.asarray(x_start, dtype=float)
    res = minimize(lambda v: 0.5 * np.sum((v - x) ** 2), start, jac=lambda v: v - x, method="SLSQP",
                   constraints=constraints, bounds=bounds, options={"maxiter": maxiter, "ftol": ftol})
    return {"x": res.x, "distance": float(np.linalg.norm(res.x - x)), "success": bool(res.success),
            "nit": int(res.nit), "message": res.message}


def _bisect(net: NumpyNetwork, a: np.ndarray, b: np.ndarray, source: int) -> np.ndarray:
    """The point where the segment from ``a`` (class ``source``) to ``b`` (another class) leaves
    the source class: 60 halvings of :func:`fliplib.params.bisect_boundary`."""
    t = bisect_boundary(net, a[None], (b - a)[None], np.array([source]), max_halvings=60)[0]
    return a + t * (b - a)


def deepfool_boundary_point(model, x, *, max_iter: int = 50, overshoot: float = 0.02) -> dict:
    """DeepFool (Moosavi-Dezfooli et al., 2016): linearise all boundaries, step to the nearest, repeat.

    Once the class changes, the segment from ``x`` is bisected so that the returned point lies on
    the boundary of the original class.  Returns ``x``, ``distance``, ``target`` and ``nit``.
    """
    net = numpy_network(model)
    positive_int("max_iter", max_iter)
    x = np.asarray(x, dtype=float)
    source = int(np.argmax(net.logits(x)[0]))
    v = x.copy()
    for it in range(1, max_iter + 1):
        z, jac = _numpy_jacobian(net, v)
        if np.argmax(z) != source:
            break
        others = [k for k in range(len(z)) if k != source]
        f = z[others] - z[source]
        g = jac[others] - jac[source]
        dist = np.abs(f) / np.maximum(np.linalg.norm(g, axis=1), 1e-300)
        k = int(np.argmin(dist))
        v = v + (1 + overshoot) * (np.abs(f[k]) / max(np.sum(g[k] ** 2), 1e-300)) * g[k]
    crossed = int(np.argmax(net.logits(v)[0])) != source
    point = _bisect(net, x, v, source) if crossed else v
    target = int(np.argmax(net.logits(point + (point - x) * 1e-9)[0]))
    return {"x": point, "distance": float(np.linalg.norm(point - x)), "success": crossed, "target": target, "nit": it}


def random_boundary_point(model, x, *, n_directions: int = 200, max_radius: float = 10.0, seed: int = 0) -> dict:
    """Random search: the nearest boundary crossing along ``n_directions`` random rays from ``x``.

    Each ray is scanned at 64 radii up to ``max_radius`` and the first change of class is
    bisected.  Returns ``x``, ``distance`` and ``success``.
    """
    net = numpy_network(model)
    positive_int("n_directions", n_directions)
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    source = int(np.argmax(net.logits(x)[0]))
    dirs = rng.normal(size=(n_directions, x.size))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radii = np.linspace(0, max_radius, 65)[1:]
    best, best_d = None, np.inf
    for u in dirs:
        pts = x + radii[:, None] * u
        cls = np.argmax(net.logits(pts), axis=1)
        hit = np.flatnonzero(cls != source)
        if hit.size == 0 or radii[hit[0]] >= best_d:
            continue
        lo = x + (radii[hit[0] - 1] if hit[0] else 0.0) * u
        point = _bisect(net, lo, pts[hit[0]], source)
        dist = float(np.linalg.norm(point - x))
        if dist < best_d:
            best, best_d = point, dist
    return {"x": best, "distance": best_d, "success": best is not None}
