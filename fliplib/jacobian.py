"""Analytic derivatives of the network output with respect to its input, and Lipschitz bounds.

Eqs. 11-13 of the MSML 2020 paper write the Jacobian as a product of per-layer factors
``diag(erf'(a_k / sigma_k)) W_k^T``.  We evaluate the same product from the output end
(reverse accumulation), which costs ``n_classes`` rows instead of ``n_features`` columns.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ._checks import positive_int
from .model import ERF_SLOPE
from .params import Forward, NetworkParams, forward, network_params

__all__ = [
    "vjp",
    "vjp_float32",
    "logit_jacobian",
    "softmax_jacobian",
    "layer_jacobian_norms",
    "lipschitz_bound",
    "homotopy_lipschitz_bounds",
]


def vjp(params: NetworkParams, fwd: Forward, seeds: tf.Tensor) -> tf.Tensor:
    """Rows ``seeds @ Jac(y^{(m)}, x)`` of the logit Jacobian (eqs. 11-12, right to left).

    Parameters
    ----------
    params : NetworkParams
    fwd : Forward
        The forward pass at the points (its activation slopes).
    seeds : tf.Tensor, shape (n, r, n_classes)
        ``r`` row vectors per point, e.g. ``e_i - e_j`` for the gradient of ``z_i - z_j``.

    Returns
    -------
    tf.Tensor, shape (n, r, n_features)
    """
    g = tf.einsum("nrc,hc->nrh", seeds, params.weights[-1])
    for w, slope in zip(reversed(params.weights[:-1]), reversed(fwd.slopes)):
        g = tf.einsum("nrh,ih->nri", g * slope[:, None, :], w)
    return g


def vjp_float32(params: NetworkParams, fwd: Forward, seeds: tf.Tensor) -> tf.Tensor:
    """:func:`vjp` in single precision, rescaled layer by layer so that nothing underflows.

    The same product as :func:`vjp` (eqs. 11-12, right to left), with each factor's matrix
    product in float32 (several times faster on a CPU).  The seeds (in float64), every row before
    each matrix product and each point's slopes are divided by their largest entry, and the
    logarithms of those scales are accumulated in float64; where the product of a row and the
    slopes would underflow float32, that row's product is formed in float64.  A row therefore
    keeps about seven significant digits however small it is (a saturated erf network's
    gradients can be 1e-100, below float32's range, and even below float64's they stay
    representable until the final product).  The SQP uses it for the linearised constraints:
    their values stay in float64, so the precision of a flip point is unaffected; only the
    Newton steps become slightly inexact.

    Parameters
    ----------
    params, fwd, seeds :
        As for :func:`vjp`.

    Returns
    -------
    tf.Tensor, float64, shape (n, r, n_features)
    """

    def rescaled(values, axis):
        """``values`` divided by their largest magnitude along ``axis`` (all-zero slices kept),
        the logarithm of that scale in float64, and which slices are not all zero."""
        peak = tf.reduce_max(tf.abs(values), axis=axis, keepdims=True)
        nonzero = peak > 0
        peak = tf.where(nonzero, peak, tf.ones_like(peak))
        return values / peak, tf.math.log(tf.cast(peak, tf.float64)), tf.squeeze(nonzero, axis)

    # The seeds in float64 first: a row may be far outside float32's range (the SQP's multipliers).
    seeds, log_scale, _ = rescaled(tf.cast(seeds, tf.float64), 2)
    g = tf.einsum("nrc,hc->nrh", tf.cast(seeds, tf.float32), tf.cast(params.weights[-1], tf.float32))
    for w, slope in zip(reversed(params.weights[:-1]), reversed(fwd.slopes)):
        g, log_peak, nonzero = rescaled(g, 2)
        slope, log_slope, _ = rescaled(tf.cast(slope, tf.float64), 1)
        product = g * tf.cast(slope, tf.float32)[:, None, :]
        # Both factors are at most 1, so the product can only underflow.  Where a nonzero row's
        # product peaks below 1e-30, float32 may have dropped entries that matter (it keeps
        # nothing below 1e-38 relative to 1, the rows' largest entry): those rows form the
        # product in float64 instead (rows whose weight sits on neurons with slopes far below
        # the layer's largest, or on zero slopes of a ReLU network, where it stays zero).
        wide = tf.where(nonzero & (tf.reduce_max(tf.abs(product), axis=2) < 1e-30))
        exact, log_product, _ = rescaled(tf.cast(tf.gather_nd(g, wide), tf.float64) * tf.gather(slope, wide[:, 0]), 1)
        product = tf.tensor_scatter_nd_update(product, wide, tf.cast(exact, tf.float32))
        log_product = tf.scatter_nd(wide, log_product[:, 0], tf.shape(log_peak[:, :, 0], out_type=wide.dtype))[:, :, None]
        g = tf.einsum("nrh,ih->nri", product, tf.cast(w, tf.float32))
        log_scale = log_scale + log_peak + log_slope[:, None, :] + log_product
    return tf.cast(g, tf.float64) * tf.exp(log_scale)


def _as_points(params: NetworkParams, x, name: str = "x") -> np.ndarray:
    """``x`` as a finite float64 array of shape (n, n_features); ``name`` is used in errors."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != params.n_features:
        raise ValueError(f"{name} must have shape (n, {params.n_features}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or inf values")
    return x


def logit_jacobian(model, x, *, batch_size: int = 1024) -> np.ndarray:
    """Jacobian of the logits ``y^{(m)}`` with respect to the input (eqs. 11-12 and 9).

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n, n_features)

    Returns
    -------
    ndarray, shape (n, n_classes, n_features)
    """
    params = network_params(model)
    x = _as_points(params, x)
    positive_int("batch_size", batch_size)
    eye = tf.eye(params.n_classes, dtype=tf.float64)
    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        fwd = forward(params, chunk)
        out.append(vjp(params, fwd, tf.broadcast_to(eye, (len(chunk),) + eye.shape)).numpy())
    return np.concatenate(out) if out else np.zeros((0, params.n_classes, params.n_features))


def softmax_jacobian(model, x, *, batch_size: int = 1024) -> np.ndarray:
    """Jacobian of the softmax output ``z = softmax(y^{(m)})`` (eq. 13): ``(diag(z) - z z^T) Jac(y^{(m)}, x)``.

    Returns
    -------
    ndarray, shape (n, n_classes, n_features)
    """
    params = network_params(model)
    x = _as_points(params, x)
    jac = logit_jacobian(params, x, batch_size=batch_size)
    z = tf.nn.softmax(forward(params, x).logits).numpy()
    outer = z[:, :, None] * (np.eye(params.n_classes)[None] - z[:, None, :])
    return outer @ jac


def layer_jacobian_norms(model, x, *, scales=None, ord=2) -> np.ndarray:
    """Norms of the per-layer Jacobians ``Jac(y^{(k)}, y^{(k-1)}) = diag(act'(a_k)) W_k^T``.

    These are the factors whose product is eq. 12; norms far below or above 1 are the vanishing
    and exploding gradients that Algorithm 1 removes.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    x : array_like, shape (n, n_features)
    scales : list of tensors, optional
        Per-sample activation parameters (e.g. ``sigma^h`` of Algorithm 1), as for :func:`forward`.
    ord : {2, inf}
        Matrix norm.

    Returns
    -------
    ndarray, shape (n, m - 1)
    """
    params = network_params(model)
    x = _as_points(params, x)
    fwd = forward(params, x, scales=scales)
    norms = []
    for w, slope in zip(params.weights[:-1], fwd.slopes):
        layer_jac = slope.numpy()[:, :, None] * w.numpy().T[None]  # (n, n_k, n_{k-1})
        norms.append(np.linalg.norm(layer_jac, ord=ord, axis=(1, 2)))
    return np.stack(norms, axis=1)


def _weight_norms(params: NetworkParams, ord) -> np.ndarray:
    # The layer Jacobian is diag(.) W^T, so its norm is bounded by ||W^T||.
    return np.array([np.linalg.norm(w.numpy().T, ord=ord) for w in params.weights])


def lipschitz_bound(model, *, ord=np.inf, sigma=None) -> float:
    """Upper bound on the Lipschitz constant of the logits (eq. 15).

    ``||Jac(y^{(m)}, x)|| <= (2/sqrt(pi))^{m-1} / prod(sigma_k) * prod_k ||W_k^T||``, because every
    erf slope lies in ``(0, 2/(sigma sqrt(pi))]``.  For PReLU the slopes lie in ``[alpha, 1]`` and
    the bound is ``prod_k ||W_k^T||``.  The softmax has Jacobian norm at most 1/2 in the
    infinity norm, so the same number also bounds the softmax output.

    Parameters
    ----------
    model : keras.Model or NetworkParams
    ord : {inf, 2}
        ``inf`` is the bound of the paper (eq. 15); ``2`` bounds Euclidean changes, which is what
        a search along a line in the 2-norm needs.
    sigma : sequence of float, optional
        Widths to use instead of the network's own (e.g. along a homotopy path).
    """
    params = network_params(model)
    product = float(np.prod(_weight_norms(params, ord)))
    if params.activation == "prelu":
        return product
    sigma = np.asarray(params.scales if sigma is None else sigma, dtype=float)
    if sigma.shape != (params.n_hidden,) or np.any(sigma <= 0):
        raise ValueError(f"sigma must hold {params.n_hidden} positive widths, got {sigma}")
    return float(np.prod(ERF_SLOPE / sigma)) * product


def homotopy_lipschitz_bounds(model, tau: float, *, ord=np.inf) -> tuple[float, float]:
    """Range of the eq. 15 bound over all transformed networks of Algorithm 1 (eq. 16).

    With uniform widths ``2/sqrt(pi) <= sigma^h_k <= 2/(tau sqrt(pi))`` (Algorithm 1 without its
    per-neuron lines 5-10) the bound lies in ``[tau^{m-1} prod ||W_k||, prod ||W_k||]``.  Where
    lines 5-10 fire, a neuron's width ``|c_t| / gamma`` exceeds ``2/(tau sqrt(pi))``: the upper
    end still holds (every width is at least ``2/sqrt(pi)``), the lower end need not.
    """
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie in (0, 1), got {tau}")
    params = network_params(model)
    product = float(np.prod(_weight_norms(params, ord)))
    return tau**params.n_hidden * product, product
