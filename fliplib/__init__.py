"""fliplib: closest flip points of erf and PReLU networks (Yousefzadeh & O'Leary).

The core API, imported here:

- ``fliplib.model``: :func:`erf_network`, :func:`prelu_network`, :func:`train`, :func:`fold_input_scaling`,
  :data:`ARCHITECTURES`
- ``fliplib.params``: :func:`network_params`, the float64 parameter view the solvers use
- ``fliplib.jacobian``: :func:`logit_jacobian`, :func:`softmax_jacobian`, :func:`lipschitz_bound` (eqs. 11-16)
- ``fliplib.sqp``: the inner solver F (a batched SQP)
- ``fliplib.homotopy``: Algorithms 1, 2, F2 and F3
- ``fliplib.rescue``, ``fliplib.search``: rescue paths and the global stage
- ``fliplib.flip``: :func:`closest_flip_points`, :class:`FlipResult` and :class:`FlipOptions` (eqs. 1-5)

The other modules are imported on first use, so ``import fliplib`` loads neither Matplotlib nor
SciPy's optimisers: ``fliplib.mixed`` (categorical variables), ``fliplib.boundary`` (geometry
of decision boundaries), ``fliplib.baselines`` (reference solvers), ``fliplib.analysis``,
``fliplib.plotting``, ``fliplib.datasets``, ``fliplib.wavelets``, and ``fliplib.studies`` (the
code of single chapters).  ``fliplib.datasets.load_mnist`` works without an import statement.
"""

import importlib
import importlib.util

if importlib.util.find_spec("tensorflow") is None:  # TensorFlow is the `tf` extra
    raise ImportError(
        "fliplib needs TensorFlow, which is not installed: pip install 'fliplib[tf]' "
        "(Linux x86_64 gets tensorflow-cpu, other platforms tensorflow)",
        name="tensorflow",
    )

from . import homotopy
from .flip import STATUS_MESSAGES, FlipResult, closest_flip_points, flip_evidence, status_from_evidence
from .options import FlipOptions
from .jacobian import (
    homotopy_lipschitz_bounds,
    layer_jacobian_norms,
    lipschitz_bound,
    logit_jacobian,
    softmax_jacobian,
)
from .model import (
    ARCHITECTURES,
    Erf,
    ScalarPReLU,
    erf_network,
    fold_input_scaling,
    load_model,
    predict_proba,
    prelu_network,
    train,
)
from .params import NetworkParams, network_params

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "Erf",
    "FlipOptions",
    "FlipResult",
    "NetworkParams",
    "STATUS_MESSAGES",
    "ScalarPReLU",
    "closest_flip_points",
    "erf_network",
    "flip_evidence",
    "fold_input_scaling",
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

#: Submodules imported on first attribute access (PEP 562), not by ``import fliplib``.
_LAZY_SUBMODULES = frozenset(
    {"analysis", "baselines", "boundary", "datasets", "mixed", "plane", "plotting", "studies", "wavelets"}
)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_SUBMODULES)
