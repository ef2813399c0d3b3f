"""Keras erf and PReLU networks of the papers (MSML 2020, eqs. 7-10 and 17).

A hidden layer is ``y_k = erf((y_{k-1} W_k + b_k) / sigma_k)`` (eq. 8) with one trainable
width ``sigma_k`` per layer; the output layer is linear (eq. 9) and the models return
*logits*: softmax (eq. 10) is applied by the loss during training and by :func:`predict_proba`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from ._checks import numbers, per_feature, positive_int, positive_number

__all__ = [
    "Erf",
    "ScalarPReLU",
    "ARCHITECTURES",
    "erf_network",
    "prelu_network",
    "train",
    "fold_input_scaling",
    "predict_proba",
    "load_model",
]

#: Layer sizes ``[n_inputs, hidden..., n_classes]`` of the papers' networks
#: (MSML 2020 Table A1, arXiv 2019 Table B1, decision-boundaries paper Table A1).
ARCHITECTURES: dict[str, list[int]] = {
    "mnist": [100, 500, 500, 500, 400, 300, 250, 250, 250, 200, 150, 150, 100, 10],
    "cifar10": [2500, 1000, 500, 455, 410, 365, 320, 275, 230, 185, 140, 95, 50, 2],
    "adult": [107, 100, 100, 100, 80, 60, 50, 50, 50, 40, 30, 30, 20, 2],
    "wbcd": [30, 40, 20, 15, 10, 5, 5, 5, 5, 5, 5, 5, 5, 2],
    "cifar10_boundaries": [200, 700, 600, 510, 440, 375, 325, 285, 250, 215, 160, 100, 40, 2],
}


@keras.saving.register_keras_serializable(package="fliplib")
class Erf(keras.layers.Layer):
    """Tunable erf activation ``erf(a / sigma)`` with one scalar width (eq. 8).

    Parameters
    ----------
    sigma : float
        Initial width; the weight ``sigma`` is trainable unless ``trainable=False``.
    """

    def __init__(self, sigma: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
        self.initial_sigma = float(sigma)

    def build(self, input_shape):
        self.sigma = self.add_weight(
            name="sigma",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_sigma),
            trainable=True,
        )

    def call(self, inputs):
        return ops.erf(inputs / self.sigma)

    def get_config(self):
        return {**super().get_config(), "sigma": self.initial_sigma}


@keras.saving.register_keras_serializable(package="fliplib")
class ScalarPReLU(keras.layers.Layer):
    """Parametric ReLU with one slope per layer: ``a if a >= 0 else alpha * a`` (eq. 17).

    ``alpha = 0`` is the ReLU.  The slope is not trained (the ReLU homotopy of
    Algorithms F2-F3 moves it, training does not).
    """

    def __init__(self, alpha: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not (np.isfinite(alpha) and 0.0 <= alpha < 1.0):
            raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
        self.initial_alpha = float(alpha)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            name="alpha",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_alpha),
            trainable=False,
        )

    def call(self, inputs):
        return ops.where(inputs >= 0, inputs, self.alpha * inputs)

    def get_config(self):
        return {**super().get_config(), "alpha": self.initial_alpha}


def _check_layer_sizes(layer_sizes: Sequence[int]) -> list[int]:
    if any(isinstance(s, (bool, np.bool_)) for s in layer_sizes):
        raise ValueError(f"layer_sizes must be positive integers, got {list(layer_sizes)}")
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least [n_inputs, n_classes], got {list(layer_sizes)}")
    if any(s < 1 for s in sizes) or any(s != t for s, t in zip(sizes, layer_sizes)):
        raise ValueError(f"layer_sizes must be positive integers, got {list(layer_sizes)}")
    if sizes[-1] < 2:
        raise ValueError(f"a classifier needs at least 2 output classes, got {sizes[-1]}")
    return sizes


def _network(layer_sizes, activation, *, dropout: float, seed: int | None, name: str) -> keras.Model:
    sizes = _check_layer_sizes(layer_sizes)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=2 * len(sizes))
    inputs = keras.Input(shape=(sizes[0],), name="x")
    h = inputs
    for k, width in enumerate(sizes[1:-1], start=1):
        h = keras.layers.Dense(
            width,
            kernel_initializer=keras.initializers.GlorotUniform(seed=int(seeds[2 * k])),
            name=f"dense_{k}",
        )(h)
        h = activation(k)(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, seed=int(seeds[2 * k + 1]), name=f"dropout_{k}")(h)
    logits = keras.layers.Dense(
        sizes[-1],
        kernel_initializer=keras.initializers.GlorotUniform(seed=int(seeds[0])),
        name="logits",
    )(h)
    return keras.Model(inputs, logits, name=name)


def erf_network(
    layer_sizes: Sequence[int], *, sigma: float = 1.0, dropout: float = 0.0, seed: int | None = None
) -> keras.Model:
    """Build the erf network of eqs. 7-10 (returns logits).

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_inputs, hidden..., n_classes]``, for example ``ARCHITECTURES["mnist"]``.
    sigma : float
        Initial width of every erf layer (trainable).
    dropout : float
        Dropout rate after each hidden layer (training only).
    seed : int, optional
        Seed of the weight initialisation.

    Returns
    -------
    keras.Model
        Layers ``Dense -> Erf [-> Dropout]`` per hidden layer, then a linear ``Dense``.
    """
    return _network(layer_sizes, lambda k: Erf(sigma, name=f"erf_{k}"), dropout=dropout, seed=seed, name="erf_network")


def prelu_network(
    layer_sizes: Sequence[int], *, alpha: float = 0.0, dropout: float = 0.0, seed: int | None = None
) -> keras.Model:
    """Build the PReLU network of eq. 17 (``alpha=0`` is a ReLU network); returns logits."""
    return _network(
        layer_sizes, lambda k: ScalarPReLU(alpha, name=f"prelu_{k}"), dropout=dropout, seed=seed, name="prelu_network"
    )


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int | None = None,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train ``model`` as the papers did: Adam, cross-entropy on the softmax of the logits.

    Parameters
    ----------
    model : keras.Model
        A network from :func:`erf_network` or :func:`prelu_network`.
    x, y : ndarray
        Inputs ``(n, n_features)`` and integer labels ``(n,)``.
    epochs, batch_size, learning_rate : int, int, float
        Training length and Adam's step (1e-3 in the papers).
    seed : int, optional
        Seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``) so that the
        shuffling and dropout are reproducible.
    validation_data : (ndarray, ndarray), optional
        Evaluated after each epoch (recorded in the history).
    verbose : int
        Keras' verbosity (0: silent).
    """
    x, y = _training_data(model, x, y)
    if len(x) == 0:
        raise ValueError("x holds no training inputs (shape (0, n_features)): there is nothing to train on")
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError("validation_data must be a pair (x, y)")
        validation_data = _training_data(model, *validation_data, prefix="validation_data: ")
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_number("learning_rate", learning_rate)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        shuffle=True,
        verbose=verbose,
    )


def fold_input_scaling(model: keras.Model, shift, scale) -> keras.Model:
    """Make a network trained on ``(x - shift) / scale`` read raw ``x``, in place.

    Deep erf networks train badly on inputs of large or uneven scale (the first layer saturates);
    train on standardised inputs, then fold the map into the first layer,
    ``W_1 (x - m) / s + b_1 = (W_1 / s) x + (b_1 - W_1 (m / s))``, so that the network reads
    the inputs in their own units, where flip-point distances are measured.

    Parameters
    ----------
    model : keras.Model
        A network from :func:`erf_network` or :func:`prelu_network`.
    shift, scale : float or array of shape (n_features,)
        The map the network was trained behind; ``scale`` must be positive.

    Returns
    -------
    keras.Model
        ``model`` itself, its first layer changed.
    """
    first = next((layer for layer in model.layers if isinstance(layer, keras.layers.Dense)), None)
    if first is None:
        raise TypeError("model has no Dense layer to fold the input scaling into")
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in first.get_weights())
    shift, scale = per_feature("shift", shift, len(kernel)), per_feature("scale", scale, len(kernel))
    if np.any(scale <= 0):
        raise ValueError("scale must be positive")
    first.set_weights([
        (kernel / scale[:, None]).astype(first.dtype),
        (bias - (shift / scale) @ kernel).astype(first.dtype),
    ])
    return model


def _training_data(model: keras.Model, x, y, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``x`` as finite float32 ``(n, n_features)`` and ``y`` as int64 labels ``(n,)`` of ``model``'s classes."""
    x = _points(model, x, f"{prefix}x")
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"{prefix}y must have shape ({x.shape[0]},), got {y.shape}")
    n_classes = model.output_shape[-1]
    if y.size and (not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or y.min() < 0
                   or y.max() >= n_classes or not np.all(np.equal(np.mod(y, 1), 0))):
        raise ValueError(f"{prefix}y must hold integer class labels in [0, {n_classes})")
    return x, y.astype("int64")


def _points(model: keras.Model, x, name: str = "x") -> np.ndarray:
    """``x`` as a finite float32 array ``(n, n_features)`` for ``model`` (one point may be 1-D)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    n_features = model.input_shape[-1]
    x = numbers(name, x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (n, {n_features}), got {x.shape}")
    with np.errstate(over="ignore"):  # too large for float32: reported just below
        x = x.astype("float32")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or inf values (or values too large for float32)")
    return x


def predict_proba(model: keras.Model, x: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """Softmax probabilities (eq. 10) of ``model``'s logits, ``(n, n_classes)`` float64."""
    x = _points(model, x)
    positive_int("batch_size", batch_size)
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]))
    logits = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=float)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def load_model(path) -> keras.Model:
    """Load a network saved with ``model.save(path)`` (``.keras`` format).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a readable Keras model (corrupt, truncated, or another format);
        the error names the path and keeps Keras' own message as its cause.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras reports a corrupt archive as "File not found" or worse
        raise ValueError(
            f"{str(path)!r} is not a readable Keras model (a .keras file saved by model.save): "
            f"{type(err).__name__}: {err}"
        ) from err


#: The derivative of erf at 0 is 2/sqrt(pi); used by the homotopy and the Lipschitz bounds.
ERF_SLOPE = 2.0 / math.sqrt(math.pi)
