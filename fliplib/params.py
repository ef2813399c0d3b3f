"""A plain float64 view of an erf or PReLU network, with a batched forward pass.

The solvers never touch Keras internals: they work on :class:`NetworkParams`, the weights
``W_k``, biases ``b_k`` and activation parameters (``sigma_k`` of eq. 8 or ``alpha_k`` of eq. 17)
as float64 tensors.  The forward pass accepts **per-sample** activation parameters (per layer
or per neuron, as Algorithm 1 lines 5-10 need) and a per-sample output bias (line 13), so that
a whole batch of points, each on its own homotopy path, is evaluated in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from .model import ERF_SLOPE, Erf, ScalarPReLU

__all__ = ["NetworkParams", "network_params", "forward", "Forward"]

_SKIPPED_LAYERS = (keras.layers.InputLayer, keras.layers.Dropout)


@dataclass(frozen=True)
class NetworkParams:
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
        If the model holds any other layer, mixes activations, or does not end in a linear Dense.
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
            scales.append(float(layer.sigma.numpy() if kind == "erf" else layer.alpha.numpy()))
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


def _activation(params: NetworkParams, a: tf.Tensor, scale: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    if params.activation == "erf":
        u = a / scale
        # erf is +-1 to float64 precision beyond |u| = 6; the clip keeps TensorFlow's float64 erf,
        # which returns NaN beyond |u| ~ 1e154 (u**2 overflows), at its limit.
        return tf.math.erf(tf.clip_by_value(u, -30.0, 30.0)), (ERF_SLOPE / scale) * tf.exp(-tf.square(u))
    positive = a >= 0
    return tf.where(positive, a, scale * a), tf.where(positive, tf.ones_like(a), tf.broadcast_to(scale, tf.shape(a)))


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
