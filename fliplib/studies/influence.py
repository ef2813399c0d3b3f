"""Uses of closest flip points on a training set (MSML 2020 sec. 4 and 6.1; arXiv 2019 sec. 5.1.1).

Three experiments of the papers, each reduced to small functions on plain arrays (the claims are
the papers'; the functions measure them, whatever the outcome):

- **Alternate classifications.**  For a misclassified input, the class of its closest flip
  point (or one of the classes tied for closest after rounding distances to 4 decimals) is
  claimed to be the correct label: :func:`nearest_flip_classes`, :func:`alternate_label_found`.
- **Influential training points.**  Order a training set by the distance of each point to its
  closest flip point; a network trained on the closest points is claimed to beat one trained on a
  random subset of the same size, which beats one trained on the farthest points:
  :func:`distance_subsets`, :func:`subset_accuracies`.
- **Synthetic data.**  Append to the training set a flip point for each training mistake,
  labelled with the correct class, and retrain (:func:`subset_accuracies` on the enlarged set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._checks import positive_int
from ..model import predict_proba, train

__all__ = [
    "alternate_label_found",
    "distance_subsets",
    "nearest_flip_classes",
    "subset_accuracies",
]


def _distances(distance, *, name: str = "distance", ndim: int | None = None) -> np.ndarray:
    d = np.asarray(distance, dtype=float)
    if ndim is not None and d.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {d.shape}")
    if np.any(np.isnan(d)) or np.any(d < 0):
        raise ValueError(f"{name} must hold non-negative distances (inf for none), got NaN or negative values")
    return d


def nearest_flip_classes(distance, *, decimals: int | None = 4) -> np.ndarray:
    """The classes whose flip point is the closest, ties included.

    Parameters
    ----------
    distance : array_like, shape (n, n_classes)
        Distance from each input to its flip point toward each class, ``inf`` where there is
        none (the input's own class, failed problems): ``FlipResult.distance`` with
        ``target="all"``, after masking failures, e.g. ``np.where(res.success, res.distance, inf)``.
    decimals : int or None, default 4
        Round distances to this many decimals before comparing (the papers' rule: "or one of
        those tied for closest after rounding to 4 decimal digits"); ``None`` compares exactly.

    Returns
    -------
    ndarray of bool, shape (n, n_classes)
        True for every class at the smallest (rounded) distance.  A row with no finite
        distance is all False.
    """
    d = _distances(distance, ndim=2)
    if decimals is not None:
        d = np.round(d, decimals)
    best = d.min(axis=1, keepdims=True)
    return (d == best) & np.isfinite(best)


def alternate_label_found(distance, labels, *, decimals: int | None = 4) -> np.ndarray:
    """Whether the true label is among the classes of the closest flip points.

    Parameters
    ----------
    distance : array_like, shape (n, n_classes)
        As for :func:`nearest_flip_classes`.
    labels : array_like of int, shape (n,)
        The true classes (for a misclassified input, not its predicted class).
    decimals : int or None, default 4
        Rounding before the tie test.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    nearest = nearest_flip_classes(distance, decimals=decimals)
    labels = np.asarray(labels)
    if labels.shape != (nearest.shape[0],):
        raise ValueError(f"labels must have shape ({nearest.shape[0]},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= nearest.shape[1]):
        raise ValueError(f"labels must lie in [0, {nearest.shape[1]}), got range [{labels.min()}, {labels.max()}]")
    return nearest[np.arange(len(labels)), labels.astype(int)]


def distance_subsets(distance, size: int, *, n_random: int = 1, seed=None) -> dict[str, list[np.ndarray]]:
    """Indices of the ``size`` points closest to, and farthest from, a flip point, and random subsets.

    Parameters
    ----------
    distance : array_like, shape (n,)
        Distance of each training point to its closest flip point (``inf``: none found; such
        points count as the farthest).
    size : int
        Points per subset, ``1 <= size <= n``.
    n_random : int, default 1
        Number of random subsets (drawn without replacement, independently of each other).
    seed : int or numpy.random.Generator, optional
        Seed of the random subsets.

    Returns
    -------
    dict
        ``{"closest": [idx], "random": [idx, ...], "farthest": [idx]}``, each ``idx`` a sorted
        array of ``size`` distinct indices.  Ties in distance are broken by index (stable sort).
    """
    d = _distances(distance, ndim=1)
    n = len(d)
    if not (isinstance(size, (int, np.integer)) and 1 <= size <= n):
        raise ValueError(f"size must be an integer in [1, {n}], got {size!r}")
    positive_int("n_random", n_random, allow_zero=True)
    order = np.argsort(d, kind="stable")
    rng = np.random.default_rng(seed)
    return {
        "closest": [np.sort(order[:size])],
        "random": [np.sort(rng.choice(n, size=size, replace=False)) for _ in range(n_random)],
        "farthest": [np.sort(order[n - size :])],
    }


def subset_accuracies(
    build: Callable[[int], object],
    x,
    y,
    subsets: Mapping[str, Sequence[np.ndarray]],
    x_test,
    y_test,
    *,
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Train a fresh network on each subset and measure its accuracy on a test set.

    Parameters
    ----------
    build : callable
        ``build(seed)`` returns an untrained network (e.g. ``lambda s: fliplib.erf_network(sizes, seed=s)``).
    x, y : ndarray
        The pool the subsets index into: inputs ``(n, n_features)`` and labels ``(n,)``.
    subsets : mapping of str to sequence of index arrays
        For example the output of :func:`distance_subsets`.
    x_test, y_test : ndarray
        Where accuracy is measured.
    epochs, batch_size, learning_rate : int, int, float
        Passed to :func:`fliplib.train`.
    seed : int, default 0
        Every network is initialised and trained with this seed (the same for every subset, so
        that the subsets, not the initialisations, differ).
    progress : bool
        Show a progress bar over the trainings.

    Returns
    -------
    pandas.DataFrame
        One row per training: ``kind``, ``trial``, ``size``, ``train accuracy`` (on its subset)
        and ``test accuracy``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    jobs = [(kind, trial, np.asarray(idx)) for kind, group in subsets.items() for trial, idx in enumerate(group)]
    for kind, trial, idx in jobs:
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= len(x):
            raise ValueError(f"subset {kind!r} #{trial} must be a non-empty 1-D array of indices into x")
    rows = []
    for kind, trial, idx in tqdm(jobs, desc="training on subsets", disable=not progress):
        model = build(seed)
        train(model, x[idx], y[idx], epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
        rows.append({
            "kind": kind,
            "trial": trial,
            "size": int(idx.size),
            "train accuracy": float(np.mean(predict_proba(model, x[idx]).argmax(axis=1) == y[idx])),
            "test accuracy": float(np.mean(predict_proba(model, x_test).argmax(axis=1) == np.asarray(y_test))),
        })
    return pd.DataFrame(rows)
