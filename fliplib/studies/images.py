"""Flip points of image classifiers, read in pixel space (MSML 2020, sec. 6.2; arXiv 2019, sec. 5.1.2).

The CIFAR-10 networks of the papers see wavelet coefficients, yet a reader judges a flip point
by its pixels.  This module holds the few pixel-space tools that chapter needs:

- :func:`pixel_network`: the network as a function of the pixels, the linear map from pixels
  to the chosen wavelet coefficients folded into its first layer.  The same function, so a
  closest flip point can be computed in pixel space with the box ``0 <= pixel <= 255`` (a box
  on pixels is not a box on wavelet coefficients).
- :func:`bound_violations`: whether flip points are legitimate images (every pixel in range).
- :func:`signed_rgb`: a signed change of pixels shown as an RGB image (Figures 5-7).

PCA and the numerical rank of the directions are in :mod:`fliplib.analysis`; the wavelet
features and their inverse in :mod:`fliplib.wavelets`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..params import NetworkParams, network_params
from ..wavelets import WaveletFeatures

__all__ = [
    "bound_violations",
    "pixel_network",
    "signed_rgb",
]


def pixel_network(model, features: WaveletFeatures, *, offset=None) -> NetworkParams:
    """The network as a function of flat pixels: ``z(x) = net(features.transform(x) - offset)``.

    The chosen wavelet coefficients are a linear function of the pixels, ``c = x M`` with
    ``M`` of shape ``(n_pixels, n_coefficients)``, so the composition is again a feed-forward
    network whose first layer has weights ``M W_1`` and bias ``b_1 - offset W_1``.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        An erf or PReLU network whose inputs are ``features.transform(images) - offset``.
    features : WaveletFeatures
        The fitted wavelet features.
    offset : array_like, shape (n_coefficients,), optional
        Subtracted from the coefficients before the network sees them (for example their
        training mean); zeros if omitted.

    Returns
    -------
    NetworkParams
        Inputs: images flattened in C order, ``images.reshape(n, -1)``, in the units the
        features were fitted in; the hidden and output layers are those of ``model``.
    """
    params = network_params(model)
    if not hasattr(features, "indices_"):
        raise ValueError("features must be fitted (call features.fit(images) first)")
    n_coefficients = len(features.indices_)
    if params.n_features != n_coefficients:
        raise ValueError(
            f"the network has {params.n_features} inputs but the features give {n_coefficients} coefficients"
        )
    offset = np.zeros(n_coefficients) if offset is None else np.asarray(offset, dtype=np.float64)
    if offset.shape != (n_coefficients,) or not np.all(np.isfinite(offset)):
        raise ValueError(f"offset must be a finite vector of shape ({n_coefficients},), got shape {offset.shape}")
    n_pixels = int(np.prod(features.image_shape_))
    basis = np.eye(n_pixels).reshape(n_pixels, *features.image_shape_)
    to_coefficients = features.transform(basis)  # row p: the coefficients of the p-th unit image
    w1 = params.weights[0].numpy()
    weights = (tf.constant(to_coefficients @ w1), *params.weights[1:])
    biases = (tf.constant(params.biases[0].numpy() - offset @ w1), *params.biases[1:])
    return NetworkParams(weights=weights, biases=biases, activation=params.activation, scales=params.scales)


def _batch(images, name: str) -> np.ndarray:
    a = np.asarray(images, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"{name} must carry a leading batch axis, got shape {a.shape}")
    return a.reshape(len(a), -1)


def bound_violations(images, *, lower: float = 0.0, upper: float = 255.0) -> tuple[np.ndarray, np.ndarray]:
    """How far each image leaves the pixel range ``[lower, upper]``, and at how many values.

    Parameters
    ----------
    images : array_like, shape (n, ...)
        Images (or any batch of vectors); NaN counts as a violation of size ``inf``.
    lower, upper : float
        The legitimate pixel range (0 and 255 for 8-bit images, 0 and 1 when scaled).

    Returns
    -------
    largest : ndarray, shape (n,)
        The largest violation ``max(lower - x, x - upper, 0)`` per image; 0 for a legitimate image.
    n_outside : ndarray of int, shape (n,)
        How many values of the image lie outside the range.
    """
    if not lower < upper:
        raise ValueError(f"need lower < upper, got {lower} and {upper}")
    a = _batch(images, "images")
    excess = np.maximum(np.maximum(lower - a, a - upper), 0.0)
    excess = np.where(np.isnan(a), np.inf, excess)
    largest = excess.max(axis=1) if a.shape[1] else np.zeros(len(a))
    return largest, np.count_nonzero(excess > 0, axis=1)


def signed_rgb(delta, *, magnify: float = 1.0, full_scale: float = 255.0) -> np.ndarray:
    """A signed change of pixels as a displayable image: mid-grey is no change.

    Each value becomes ``0.5 + magnify * delta / full_scale``, clipped to ``[0, 1]``, so that a
    channel that grows is brighter than grey in that colour and one that shrinks is darker.
    With ``full_scale=255`` and ``magnify=25`` a change of 0.5 grey levels moves a channel by
    25 levels, as in Figure 6 of the paper.

    Parameters
    ----------
    delta : array_like, shape (..., H, W, C) or (..., H, W)
        The change (for example a mean direction, reshaped to the image).
    magnify : float
        Factor applied before display.
    full_scale : float
        The pixel range of ``delta``'s units (255 for 8-bit images, 1 when scaled).

    Returns
    -------
    ndarray, float64, same shape, values in [0, 1]
        Ready for ``matplotlib.pyplot.imshow``.
    """
    if not (magnify > 0 and full_scale > 0):
        raise ValueError(f"magnify and full_scale must be positive, got {magnify!r} and {full_scale!r}")
    d = np.asarray(delta, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("delta holds NaN or inf")
    return np.clip(0.5 + magnify * d / full_scale, 0.0, 1.0)
