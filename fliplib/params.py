"""A plain float64 view of an erf or PReLU network, with a batched forward pass.

The solvers never touch Keras internals: they work on :class:`NetworkParams`, the weights
``W_k``, biases ``b_k`` and activation parameters (``sigma_k`` of eq. 8 or ``alpha_k`` of eq. 17)
as float64 tensors.  The forward pass :func:`forward` accepts **per-sample** activation
parameters (per layer or per neuron, as Algorithm 1 lines 5-10 need) and a per-sample output
bias (line 13), so that a whole batch of points, each on its own homotopy path, is evaluated in
one call.

The same network in plain NumPy, for the many small evaluations where TensorFlow's per-call
overhead dominates and for checks independent of TensorFlow: :class:`NumpyNetwork` (eqs. 7-10
and 17), the margin :func:`logit_margin` and the bisection :func:`bisect_boundary` onto the
decision boundary along segments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import scipy.special
import tensorflow as tf

from .model import ERF_SLOPE, Erf, ScalarPReLU

__all__ = [
    "NetworkParams",
    "network_params",
    "forward",
    "Forward",
    "logits",
    "NumpyNetwork",
    "numpy_network",
    "logit_margin",
    "bisect_boundary",
]

_SKIPPED_LAYERS = (keras.layers.InputLayer, keras.layers.Dropout)


@dataclass(frozen=True)
class _Layers:
    """The layers of a feed-forward network: the fields and shape that :class:`NetworkParams`
    (TensorFlow) and :class:`NumpyNetwork` (NumPy) share."""

    weights: tuple
    biases: tuple
    activation: str
    scales: tuple

    @property
    def n_features(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.weights[-1].shape[1])


@dataclass(frozen=True)
class NetworkParams(_Layers):
    """Weights of a feed-forward erf or PReLU network in float64 (row-vector convention, eq. 8).

    Attributes
    ----------
    weights : tuple of tf.Tensor
        ``W_k`` of shape ``(n_{k-1}, n_k)`` for ``k = 1..m`` (the last is the output layer).
    biases : tuple of tf.Tensor
        ``b_k`` of shape ``(n_k,)``.
    activation : {"erf", "prelu"}
        The hidden activation.
    scales : tuple of float
        ``sigma_k`` (erf) or ``alpha_k`` (PReLU) for the ``m - 1`` hidden layers.
    """

    @property
    def n_hidden(self) -> int:
        """Number of hidden layers, ``m - 1``."""
        return len(self.weights) - 1

    @property
    def layer_sizes(self) -> list[int]:
        return [self.n_features] + [int(w.shape[1]) for w in self.weights]

    def default_scales(self, n: int) -> list[tf.Tensor]:
        """The network's own activation parameters as per-sample tensors ``(n, 1)`` per layer."""
        return [tf.fill((n, 1), tf.constant(s, tf.float64)) for s in self.scales]


def _dense_weights(layer) -> tuple[np.ndarray, np.ndarray]:
    if layer.activation not in (None, keras.activations.linear):
        raise TypeError(
            f"layer {layer.name!r} is a Dense layer with a built-in activation "
            f"({getattr(layer.activation, '__name__', layer.activation)}); fliplib needs linear Dense layers "
            "followed by Erf or ScalarPReLU layers (build the model with fliplib.erf_network)"
        )
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    bias = np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
    return kernel, bias


#: The smallest erf width accepted: the smallest normal float64.  Below it ``1 / sigma``
#: overflows, and eq. 8's ``a / sigma`` and its derivative are no longer numbers.
MIN_ERF_WIDTH = float(np.finfo(np.float64).tiny)


def _check_precision(layer) -> None:
    """Refuse a layer that computes in less than single precision (e.g. Keras' ``mixed_float16``)."""
    policy = getattr(layer, "dtype_policy", None)
    compute = getattr(policy, "compute_dtype", None) or getattr(layer, "compute_dtype", None)
    if compute is not None and str(compute) not in ("float32", "float64"):
        raise TypeError(
            f"layer {layer.name!r} computes in {compute} (dtype policy {getattr(policy, 'name', policy)!r}); "
            "fliplib needs a network whose layers compute in float32 or float64, since its flip points "
            "are ties of the logits to 1e-6: build it under the 'float32' policy "
            "(keras.mixed_precision.set_dtype_policy('float32'))"
        )


def _activation_parameter(layer, kind: str) -> float:
    """``sigma_k`` (eq. 8) or ``alpha_k`` (eq. 17) of a layer, refusing what the formulas cannot use."""
    value = float(layer.sigma.numpy() if kind == "erf" else layer.alpha.numpy())
    if kind == "erf" and not (math.isfinite(value) and value >= MIN_ERF_WIDTH):
        raise ValueError(
            f"layer {layer.name!r}: the erf width sigma must be a positive finite number of at least "
            f"{MIN_ERF_WIDTH:.3g} (eq. 8 divides by it), got {value!r}"
        )
    if kind == "prelu" and not math.isfinite(value):
        raise ValueError(f"layer {layer.name!r}: the PReLU slope alpha must be a finite number, got {value!r}")
    return value


def network_params(model) -> NetworkParams:
    """Read the float64 parameter view of an erf or PReLU network.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        A network built by :func:`fliplib.erf_network` / :func:`fliplib.prelu_network` (or any
        sequential stack ``Dense -> Erf|ScalarPReLU [-> Dropout]``, ending in a linear ``Dense``).

    Raises
    ------
    TypeError
        If the model holds any other layer, mixes activations, does not end in a linear Dense,
        or computes in less than single precision (a ``mixed_float16`` dtype policy).
    ValueError
        If an erf width ``sigma_k`` is not a positive finite (normal) number, or a PReLU slope
        ``alpha_k`` is not finite; the error names the layer.
    """
    if isinstance(model, NetworkParams):
        return model
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model or NetworkParams, got {type(model).__name__}")
    try:
        shapes = (tuple(model.input_shape), tuple(model.output_shape))
    except (AttributeError, ValueError, TypeError) as err:
        raise TypeError(f"model {model.name!r} is not built: give it an input shape (keras.Input) first") from err
    if any(len(shape) != 2 for shape in shapes):
        raise TypeError(f"model {model.name!r} is not an erf or PReLU network: it must map vectors to vectors of logits, input (None, n_features) and "
                        f"output (None, n_classes); got input {shapes[0]} and output {shapes[1]}")
    weights, biases, scales, kinds = [], [], [], set()
    expect_dense = True
    for layer in model.layers:
        if isinstance(layer, _SKIPPED_LAYERS):
            continue
        _check_precision(layer)
        if isinstance(layer, keras.layers.Dense):
            if not expect_dense:
                raise TypeError(f"layer {layer.name!r}: two Dense layers in a row; expected an Erf or ScalarPReLU between them")
            w, b = _dense_weights(layer)
            weights.append(w)
            biases.append(b)
            expect_dense = False
        elif isinstance(layer, (Erf, ScalarPReLU)):
            if expect_dense:
                raise TypeError(f"layer {layer.name!r}: an activation must follow a Dense layer")
            kind = "erf" if isinstance(layer, Erf) else "prelu"
            kinds.add(kind)
            scales.append(_activation_parameter(layer, kind))
            expect_dense = True
        else:
            raise TypeError(
                f"model {model.name!r} is not an erf or PReLU network: layer {layer.name!r} of type "
                f"{type(layer).__name__} is not supported (allowed: Dense, Erf, ScalarPReLU, Dropout)"
            )
    if expect_dense or not weights:
        raise TypeError(f"model {model.name!r} is not an erf or PReLU network: it must end in a linear Dense layer")
    if len(kinds) > 1:
        raise TypeError(f"model {model.name!r} mixes erf and PReLU activations")
    if not kinds:
        raise TypeError(f"model {model.name!r} has no hidden Erf or ScalarPReLU layer")
    for a, b in zip(weights[:-1], weights[1:]):
        if a.shape[1] != b.shape[0]:
            raise TypeError(f"model {model.name!r} is not a plain feed-forward stack (shapes {a.shape} then {b.shape})")
    return NetworkParams(
        weights=tuple(tf.constant(w) for w in weights),
        biases=tuple(tf.constant(b) for b in biases),
        activation=kinds.pop(),
        scales=tuple(scales),
    )


@dataclass(frozen=True)
class Forward:
    """What a forward pass leaves for the backward pass (eqs. 11-13).

    Attributes
    ----------
    logits : tf.Tensor
        ``y^{(m)}``, shape ``(n, n_classes)``.
    slopes : list of tf.Tensor
        Per hidden layer, the derivative of the activation at its pre-activation, ``(n, n_k)``:
        ``2 / (sigma sqrt(pi)) exp(-(a / sigma)^2)`` for erf, ``1`` or ``alpha`` for PReLU.
    """

    logits: tf.Tensor
    slopes: list


def _activation_value(params: NetworkParams, a: tf.Tensor, scale) -> tf.Tensor:
    if params.activation == "erf":
        # erf is +-1 to float64 precision beyond |u| = 6; the clip keeps TensorFlow's float64 erf,
        # which returns NaN beyond |u| ~ 1e154 (u**2 overflows), at its limit.
        return tf.math.erf(tf.clip_by_value(a / scale, -30.0, 30.0))
    return tf.where(a >= 0, a, scale * a)


def _activation(params: NetworkParams, a: tf.Tensor, scale: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The activation (eq. 8 or 17) and its slope."""
    if params.activation == "erf":
        return _activation_value(params, a, scale), (ERF_SLOPE / scale) * tf.exp(-tf.square(a / scale))
    positive = a >= 0
    return _activation_value(params, a, scale), tf.where(positive, tf.ones_like(a), tf.broadcast_to(scale, tf.shape(a)))


def logits(params: NetworkParams, x, *, dtype=tf.float64) -> tf.Tensor:
    """The logits ``y^{(m)}`` alone (eqs. 8-9, the network's own activation parameters).

    ``dtype=tf.float32`` casts the weights and computes in float32: about four times faster on a
    CPU, and the same predicted class except within float32 rounding (about ``1e-6`` relative)
    of a tie, which is what the global search's scans need (:mod:`fliplib.search`).  Flip points
    and their evidence are always computed in float64 (:func:`forward`).
    """
    y = tf.convert_to_tensor(x, dtype)
    for w, b, s in zip(params.weights[:-1], params.biases[:-1], params.scales):
        y = _activation_value(params, y @ tf.cast(w, dtype) + tf.cast(b, dtype), s)
    return y @ tf.cast(params.weights[-1], dtype) + tf.cast(params.biases[-1], dtype)


def forward(params: NetworkParams, x, *, scales=None, output_bias=None) -> Forward:
    """Batched forward pass with per-sample activation parameters (eqs. 8-9).

    Parameters
    ----------
    params : NetworkParams
    x : array_like, shape (n, n_features)
    scales : list of tensors, optional
        One per hidden layer, broadcastable to ``(n, n_k)``: ``(n, 1)`` for one ``sigma`` (or
        ``alpha``) per sample and layer, ``(n, n_k)`` per neuron.  Default: the network's own.
    output_bias : tensor ``(n, n_classes)`` or ``(n_classes,)``, optional
        Replaces ``b^{(m)}`` (Algorithm 1 line 13). Default: the network's own.
    """
    y = tf.convert_to_tensor(x, tf.float64)
    if scales is None:
        scales = [tf.constant(s, tf.float64) for s in params.scales]
    slopes = []
    for w, b, s in zip(params.weights[:-1], params.biases[:-1], scales):
        y, slope = _activation(params, y @ w + b, s)
        slopes.append(slope)
    bias = params.biases[-1] if output_bias is None else output_bias
    return Forward(logits=y @ params.weights[-1] + bias, slopes=slopes)


# --------------------------------------------------------------------------------------------
# The same network in NumPy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumpyNetwork(_Layers):
    """An erf or PReLU network in plain NumPy float64 (eqs. 7-10 and 17), built once from its weights.

    For many small evaluations (bisection, scans along segments, SciPy's solvers) without
    TensorFlow's per-call overhead, and for checks independent of TensorFlow.  Build it with
    :func:`numpy_network`.

    Attributes
    ----------
    weights : tuple of ndarray
        ``W_k`` of shape ``(n_{k-1}, n_k)``, ``k = 1..m``.
    biases : tuple of ndarray
        ``b_k`` of shape ``(n_k,)``, ``k = 1..m``.
    activation : {"erf", "prelu"}
    scales : tuple of float
        ``sigma_k`` (erf) or ``alpha_k`` (PReLU) of the ``m - 1`` hidden layers.
    """

    def activate(self, a: np.ndarray, scale: float, *, slope: bool = True):
        """A hidden layer's output at pre-activations ``a`` and (with ``slope``) its derivative.

        ``erf(a / sigma)`` and ``2 / (sigma sqrt(pi)) exp(-(a / sigma)^2)`` (eq. 8), or
        ``a`` / ``alpha a`` and ``1`` / ``alpha`` (eq. 17).  Returns ``(output, slope or None)``.
        """
        if self.activation == "erf":
            u = a / scale
            return scipy.special.erf(u), (ERF_SLOPE / scale) * np.exp(-u * u) if slope else None
        return np.where(a >= 0, a, scale * a), np.where(a >= 0, 1.0, scale) if slope else None

    def forward(self, x, *, slopes: bool = True) -> tuple[np.ndarray, list]:
        """Logits ``y^{(m)}`` (eqs. 8-9) and each hidden layer's slopes (the factors of eq. 12).

        Parameters
        ----------
        x : ndarray, shape (n, n_features) or (n_features,)
        slopes : bool
            Also return the slopes (else an empty list).

        Returns
        -------
        logits : ndarray, shape (n, n_classes) (or (n_classes,))
        slopes : list of ndarray, one per hidden layer, shaped as its pre-activations
        """
        y, kept = np.asarray(x, dtype=np.float64), []
        # Inputs too large for float64 give inf or NaN logits (callers check them), not warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            for w, b, s in zip(self.weights[:-1], self.biases[:-1], self.scales):
                y, slope = self.activate(y @ w + b, s, slope=slopes)
                if slopes:
                    kept.append(slope)
            return y @ self.weights[-1] + self.biases[-1], kept

    def logits(self, x, *, batch_size: int = 8192) -> np.ndarray:
        """The logits ``y^{(m)}`` (eqs. 8-9) at points ``x`` of shape ``(n, n_features)``, in batches of rows."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out = [self.forward(x[k : k + batch_size], slopes=False)[0] for k in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.n_classes))


def numpy_network(model) -> NumpyNetwork:
    """The NumPy float64 copy of a network (a keras.Model, NetworkParams or NumpyNetwork)."""
    if isinstance(model, NumpyNetwork):
        return model
    params = network_params(model)
    return NumpyNetwork(
        weights=tuple(w.numpy() for w in params.weights),
        biases=tuple(b.numpy() for b in params.biases),
        activation=params.activation,
        scales=tuple(params.scales),
    )


def logit_margin(logits: np.ndarray, source: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """The margin ``z_i - z_j`` per row of ``logits`` (or ``z_i - max_{k != i} z_k`` without a target).

    Positive where the source class ``i`` beats ``j`` (or every other class); its zeros are the
    decision boundary, its zeros with ``target`` given the ties of eq. 3.
    """
    rows = np.arange(len(logits))
    zi = logits[rows, source]
    if target is not None:
        return zi - logits[rows, target]
    others = logits.copy()
    others[rows, source] = -np.inf
    return zi - others.max(axis=1)


def bisect_boundary(net: NumpyNetwork, start, direction, source, target=None, *, t_lo=None, t_hi=None, side=None,
                    xtol: float = 0.0, max_halvings: int = 200) -> np.ndarray:
    """Bisection onto the decision boundary along segments ``x(t) = start + t direction``.

    The margin ``g(t)`` (:func:`logit_margin` of the logits at ``x(t)``) changes sign on each
    bracket ``[t_lo, t_hi]``; each bracket is halved, keeping the half where the sign changes,
    until it is at most ``xtol`` long in input distance or ``max_halvings`` halvings are done.

    Parameters
    ----------
    net : NumpyNetwork
    start, direction : ndarray, shape (n, n_features)
        The segment from ``a`` to ``b`` is ``start=a, direction=b - a``.
    source : ndarray of int, shape (n,)
        Class ``i`` of the margin.
    target : ndarray of int, shape (n,), optional
        Class ``j``; default every other class (the boundary of the source class's region).
    t_lo, t_hi : ndarray, shape (n,), optional
        The brackets; default ``[0, 1]``, the whole segment.
    side : ndarray, shape (n,), optional
        ``sign(g(t_lo))`` where already known (it is evaluated otherwise).
    xtol : float
        Stop when ``(t_hi - t_lo) ||direction|| <= xtol``.
    max_halvings : int

    Returns
    -------
    ndarray, shape (n,)
        The midpoints of the final brackets.
    """
    start = np.asarray(start, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    n = len(start)
    lo = np.zeros(n) if t_lo is None else np.array(t_lo, dtype=np.float64)
    hi = np.ones(n) if t_hi is None else np.array(t_hi, dtype=np.float64)

    def margin_at(idx, t):
        return logit_margin(net.logits(start[idx] + t[:, None] * d[idx]), source[idx],
                            None if target is None else target[idx])

    everyone = np.arange(n)
    s_lo = np.sign(margin_at(everyone, lo)) if side is None else np.sign(side)
    with np.errstate(over="ignore"):  # an overflowing length only means: halve max_halvings times
        norm = np.linalg.norm(d, axis=1)
    for _ in range(max_halvings):
        active = (hi - lo) * norm > xtol
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        mid = 0.5 * (lo[idx] + hi[idx])
        same = np.sign(margin_at(idx, mid)) == s_lo[idx]
        lo[idx[same]] = mid[same]
        hi[idx[~same]] = mid[~same]
    return 0.5 * (lo + hi)
