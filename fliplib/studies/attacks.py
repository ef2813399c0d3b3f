"""Minimum-norm adversarial attacks of Foolbox 3, for fliplib's Keras models.

:func:`minimum_norm_attack` runs one of four l2 minimum-norm attacks of Foolbox 3
(Rauber et al. 2017, 2020) on a batch of inputs and returns plain NumPy arrays:

- ``"deepfool"``: DeepFool (Moosavi-Dezfooli et al. 2016), repeated linearisation;
- ``"ddn"``: Decoupled Direction and Norm (Rony et al. 2019);
- ``"fmn"``: Fast Minimum-Norm (Pintor et al. 2021);
- ``"cw"``: Carlini & Wagner's l2 attack (2017), with a binary search on its constant.

Each attack looks for the smallest perturbation that changes the predicted label, i.e. a point
just past the decision boundary, so its distance is comparable with the distance to the
closest flip point (a point *on* the boundary).  Foolbox is an optional dependency
(``pip install "foolbox>=3.3.4"``); the model is wrapped as a ``tf.function`` of its logits,
which works with Keras 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

__all__ = ["ATTACKS", "AttackResult", "minimum_norm_attack"]

#: The attacks :func:`minimum_norm_attack` knows, with the Foolbox class each one uses.
ATTACKS: dict[str, str] = {
    "deepfool": "L2DeepFoolAttack",
    "ddn": "DDNAttack",
    "fmn": "L2FMNAttack",
    "cw": "L2CarliniWagnerAttack",
}


@dataclass(frozen=True)
class AttackResult:
    """Outcome of :func:`minimum_norm_attack`.

    Attributes
    ----------
    x : ndarray, shape (n, n_features)
        The adversarial points (clipped to the bounds); where the attack failed, its last point.
    distance : ndarray, shape (n,)
        ``||x_adv - x||_2``, ``inf`` where the attack failed.
    success : ndarray of bool, shape (n,)
        The model's label at ``x_adv`` differs from ``labels``.
    seconds_per_input : float
        Wall-clock time of the batch divided by its size.
    attack : str
    """

    x: np.ndarray
    distance: np.ndarray
    success: np.ndarray
    seconds_per_input: float
    attack: str

    def to_frame(self) -> pd.DataFrame:
        """One row per input: distance and success."""
        return pd.DataFrame({"attack": self.attack, "distance": self.distance, "success": self.success})


def _foolbox():
    try:
        import foolbox
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'fliplib.studies.attacks needs Foolbox 3: pip install "foolbox>=3.3.4"'
        ) from err
    return foolbox


def _make_attack(foolbox, attack: str, options: dict):
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {sorted(ATTACKS)}, got {attack!r}")
    cls = getattr(foolbox.attacks, ATTACKS[attack])
    try:
        return cls(**options)
    except TypeError as err:
        raise TypeError(f"bad options for the {attack!r} attack ({cls.__name__}): {err}") from err


def minimum_norm_attack(
    model,
    x,
    labels,
    *,
    attack: str = "ddn",
    lower: float,
    upper: float,
    batch_size: int = 512,
    **options,
) -> AttackResult:
    """Run a Foolbox 3 minimum-norm l2 attack on a fliplib (Keras) model.

    Parameters
    ----------
    model : keras.Model
        A network returning logits, e.g. from :func:`fliplib.erf_network`.
    x : array_like, shape (n, n_features)
        Inputs within ``[lower, upper]``.
    labels : array_like of int, shape (n,)
        The labels to move away from (usually the model's predictions, so that the attack looks
        for the nearest point of another class).
    attack : {"deepfool", "ddn", "fmn", "cw"}
    lower, upper : float
        Foolbox's input bounds (one scalar each): every adversarial point is clipped to them.
    batch_size : int
        Inputs attacked together.
    **options
        Passed to the Foolbox attack's constructor, e.g. ``steps=``, ``max_stepsize=`` (FMN),
        ``binary_search_steps=`` (C&W).

    Returns
    -------
    AttackResult
    """
    foolbox = _foolbox()
    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, n_features), got {x.shape}")
    if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(x)},), got {labels.dtype} {labels.shape}")
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise ValueError(f"need finite bounds lower < upper, got {lower}, {upper}")
    if np.any(x < lower) or np.any(x > upper):
        raise ValueError(f"x must lie within the bounds [{lower}, {upper}]")
    runner = _make_attack(foolbox, attack, options)
    logits = tf.function(lambda v: model(v, training=False))
    # Name the device: Foolbox's own default calls tf.test.is_gpu_available, deprecated in TF 2.
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    fmodel = foolbox.TensorFlowModel(logits, bounds=(float(lower), float(upper)), device=device)
    out = np.empty_like(x)
    begin = time.perf_counter()
    for s in range(0, len(x), batch_size):
        xb = tf.constant(x[s : s + batch_size])
        yb = tf.constant(labels[s : s + batch_size].astype(np.int64))
        _, clipped, _ = runner(fmodel, xb, yb, epsilons=None)
        out[s : s + batch_size] = clipped.numpy()
    seconds = (time.perf_counter() - begin) / max(len(x), 1)
    predicted = np.argmax(np.asarray(model(out, training=False)), axis=1) if len(x) else np.zeros(0, int)
    success = predicted != labels
    distance = np.where(success, np.linalg.norm(out.astype(np.float64) - x, axis=1), np.inf)
    return AttackResult(x=out.astype(np.float64), distance=distance, success=success, seconds_per_input=seconds,
                        attack=attack)
