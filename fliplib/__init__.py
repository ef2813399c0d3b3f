"""fliplib: closest flip points of erf and PReLU networks (Yousefzadeh & O'Leary).

The public API, module by module:

- ``fliplib.model``: :func:`erf_network`, :func:`prelu_network`, :func:`train`, :data:`ARCHITECTURES`
- ``fliplib.params``: :func:`network_params`, the float64 parameter view the solvers use
- ``fliplib.jacobian``: :func:`logit_jacobian`, :func:`softmax_jacobian`, :func:`lipschitz_bound` (eqs. 11-16)
- ``fliplib.homotopy``: Algorithms 1, 2, F2 and F3
- ``fliplib.flip``: :func:`closest_flip_points` and :class:`FlipResult` (eqs. 1-5)
- ``fliplib.datasets``, ``fliplib.wavelets``: data and wavelet features
"""

from . import baselines, datasets, homotopy, plotting, wavelets
from .flip import STATUS_MESSAGES, FlipResult, closest_flip_points, flip_evidence, status_from_evidence
from .jacobian import (
    homotopy_lipschitz_bounds,
    layer_jacobian_norms,
    lipschitz_bound,
    logit_jacobian,
    softmax_jacobian,
)
from .model import ARCHITECTURES, Erf, ScalarPReLU, erf_network, load_model, predict_proba, prelu_network, train
from .params import NetworkParams, network_params

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "Erf",
    "FlipResult",
    "NetworkParams",
    "STATUS_MESSAGES",
    "ScalarPReLU",
    "closest_flip_points",
    "erf_network",
    "flip_evidence",
    "homotopy_lipschitz_bounds",
    "layer_jacobian_norms",
    "lipschitz_bound",
    "load_model",
    "logit_jacobian",
    "network_params",
    "predict_proba",
    "prelu_network",
    "softmax_jacobian",
    "status_from_evidence",
    "train",
]
