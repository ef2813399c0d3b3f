"""Figures the chapters share: decision regions of two-feature networks and flip-point segments.

Everything here draws on a Matplotlib ``Axes`` that the caller creates and returns what it
drew or computed, so a chapter can restyle or reuse it.  The solver modules never import this
module; it only reads a network through :func:`fliplib.params.forward`.

- :func:`grid_logits`: a network's logits on a regular grid of the plane;
- :func:`plot_decision_regions`: the regions ``argmax_k z_k(x) = c`` and their boundaries;
- :func:`plot_data`: inputs coloured by class;
- :func:`plot_flip_segments`: inputs ``x``, flip points ``x_hat`` and the segments joining them;
- :func:`tie_curve`, :func:`plot_tie_curve`: the curve ``z_i(x) = z_j(x)`` of eq. 3 alone, split
  by whether eq. 4 holds on it (a brute-force check of the solver, possible in two dimensions).
"""

from __future__ import annotations

from collections.abc import Sequence

import contourpy
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap

from .params import forward, network_params

__all__ = [
    "CLASS_COLORS",
    "grid_logits",
    "plot_decision_regions",
    "plot_data",
    "plot_flip_segments",
    "plot_tie_curve",
    "tie_curve",
]

#: One colour per class (colour-blind safe, Okabe and Ito), reused by every figure of the book.
CLASS_COLORS: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
)


def _check_limits(name: str, limits) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {limits!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be two finite numbers (low, high) with low < high, got {limits!r}")
    return lo, hi


def _class_color(c: int) -> str:
    return CLASS_COLORS[int(c) % len(CLASS_COLORS)]


def _logits(model, points: np.ndarray) -> np.ndarray:
    return forward(network_params(model), np.asarray(points, dtype=np.float64)).logits.numpy()


def grid_logits(model, *, xlim, ylim, resolution: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of a two-feature network on a ``resolution x resolution`` grid.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        A network with two input features.
    xlim, ylim : (float, float)
        The plotted ranges of features 1 and 2.
    resolution : int
        Grid points per axis.

    Returns
    -------
    x1, x2 : ndarray, shape (resolution,)
        The grid coordinates.
    logits : ndarray, shape (resolution, resolution, n_classes)
        ``logits[a, b]`` are the logits at ``(x1[b], x2[a])`` (image convention: rows follow ``x2``).
    """
    params = network_params(model)
    if params.n_features != 2:
        raise ValueError(f"decision regions can be drawn for two input features only, this network has {params.n_features}")
    if int(resolution) < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution!r}")
    x1 = np.linspace(*_check_limits("xlim", xlim), int(resolution))
    x2 = np.linspace(*_check_limits("ylim", ylim), int(resolution))
    g1, g2 = np.meshgrid(x1, x2)
    points = np.column_stack([g1.ravel(), g2.ravel()])
    logits = forward(params, points).logits.numpy()
    return x1, x2, logits.reshape(len(x2), len(x1), params.n_classes)


def plot_decision_regions(
    model,
    ax: Axes,
    *,
    xlim,
    ylim,
    resolution: int = 300,
    alpha: float = 0.25,
    boundary_color: str = "0.15",
    xlabel: str = "feature $x_1$",
    ylabel: str = "feature $x_2$",
) -> np.ndarray:
    """Fill the regions where each class wins and draw the decision boundaries between them.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        A network with two input features.
    ax : matplotlib.axes.Axes
    xlim, ylim : (float, float)
        The plotted ranges.
    resolution : int
        Grid points per axis.
    alpha : float
        Opacity of the region colours (:data:`CLASS_COLORS`).
    boundary_color : str
        Colour of the decision boundaries (the level sets where the winning class changes).
    xlabel, ylabel : str
        Axis labels.

    Returns
    -------
    ndarray of int, shape (resolution, resolution)
        The predicted class on the grid (rows follow ``x2``).
    """
    x1, x2, logits = grid_logits(model, xlim=xlim, ylim=ylim, resolution=resolution)
    n_classes = logits.shape[-1]
    winner = np.argmax(logits, axis=-1)
    cmap = ListedColormap([_class_color(c) for c in range(n_classes)])
    ax.pcolormesh(x1, x2, winner, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, alpha=alpha,
                  shading="nearest", rasterized=True, zorder=0)
    for c in range(n_classes):
        # z_c - max_{k != c} z_k changes sign exactly on the boundary of class c's region.
        others = np.where(np.arange(n_classes) == c, -np.inf, logits).max(axis=-1)
        level = logits[..., c] - others
        if np.nanmin(level) < 0 < np.nanmax(level):
            ax.contour(x1, x2, level, levels=[0.0], colors=boundary_color, linewidths=1.0, zorder=1)
    ax.set_xlim(x1[0], x1[-1])
    ax.set_ylim(x2[0], x2[-1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return winner


def plot_data(ax: Axes, x, y, *, class_names: Sequence[str] | None = None, size: float = 14.0,
              edgecolor: str = "white", **kwargs) -> list:
    """Scatter two-feature inputs coloured by class (:data:`CLASS_COLORS`), one legend entry per class.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    x : array_like, shape (n, 2)
    y : array_like of int, shape (n,)
        Class labels (true or predicted).
    class_names : sequence of str, optional
        Legend labels; default ``"class 0"``, ``"class 1"``, ...
    size : float
        Marker area.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter`.

    Returns
    -------
    list of matplotlib.collections.PathCollection
        One per class present in ``y``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2 or y.shape != (len(x),):
        raise ValueError(f"x must have shape (n, 2) and y shape (n,), got {x.shape} and {y.shape}")
    drawn = []
    for c in np.unique(y):
        name = class_names[int(c)] if class_names is not None else f"class {int(c)}"
        pts = x[y == c]
        drawn.append(ax.scatter(pts[:, 0], pts[:, 1], s=size, color=_class_color(c), edgecolor=edgecolor,
                                linewidth=0.4, label=name, zorder=2, **kwargs))
    return drawn


def plot_flip_segments(ax: Axes, x, x_hat, *, color: str = "k", linewidth: float = 1.0,
                       input_marker: str = "o", flip_marker: str = "X", size: float = 28.0,
                       label: str | None = "closest flip point", linestyle: str = "-") -> LineCollection:
    """Draw inputs ``x``, their flip points ``x_hat`` and the segment ``x -> x_hat`` for each.

    Rows of ``x_hat`` holding NaN (flip points that were not computed) are skipped.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    x, x_hat : array_like, shape (n, 2)
        Inputs and their flip points.
    color : str
        Colour of the segments and the flip-point markers.
    linewidth : float
    input_marker, flip_marker : str
        Markers of the inputs (hollow) and of the flip points.
    size : float
        Marker area.
    label : str, optional
        Legend label of the flip-point markers.
    linestyle : str
        Line style of the segments.

    Returns
    -------
    matplotlib.collections.LineCollection
        The segments.
    """
    x = np.asarray(x, dtype=float).reshape(-1, 2)
    x_hat = np.asarray(x_hat, dtype=float).reshape(-1, 2)
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape (n, 2), got {x.shape} and {x_hat.shape}")
    keep = np.all(np.isfinite(x_hat), axis=1)
    x, x_hat = x[keep], x_hat[keep]
    segments = LineCollection(np.stack([x, x_hat], axis=1), colors=color, linewidths=linewidth,
                              linestyles=linestyle, zorder=3)
    ax.add_collection(segments)
    ax.scatter(x[:, 0], x[:, 1], s=size, facecolor="none", edgecolor=color, marker=input_marker,
               linewidth=1.0, zorder=4)
    ax.scatter(x_hat[:, 0], x_hat[:, 1], s=size, color=color, marker=flip_marker, edgecolor="white",
               linewidth=0.5, label=label, zorder=5)
    return segments


def tie_curve(model, source: int, target: int, *, xlim, ylim, resolution: int = 300) -> tuple[list, list]:
    """The curve ``z_i(x) = z_j(x)`` (eq. 3 alone) of a two-feature network, and where eq. 4 holds on it.

    The curve is the zero level set of ``z_i - z_j`` on a grid, with linear interpolation
    between grid points (its accuracy is about the grid spacing).  A vertex is *valid* when
    no third class's logit exceeds ``max(z_i, z_j)`` there: valid vertices are flip points
    between ``i`` and ``j``, the others lie where a third class wins.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        A network with two input features.
    source, target : int
        Classes ``i`` and ``j``.
    xlim, ylim : (float, float)
        The searched ranges.
    resolution : int
        Grid points per axis.

    Returns
    -------
    lines : list of ndarray, shape (m_k, 2)
        The connected pieces of the curve (empty when ``z_i - z_j`` keeps one sign).
    valid : list of ndarray of bool, shape (m_k,)
        Per vertex, whether eq. 4 holds.
    """
    i, j = int(source), int(target)
    x1, x2, logits = grid_logits(model, xlim=xlim, ylim=ylim, resolution=resolution)
    n_classes = logits.shape[-1]
    if not (0 <= i < n_classes and 0 <= j < n_classes and i != j):
        raise ValueError(f"source and target must be two different classes in [0, {n_classes}), got {i} and {j}")
    lines = contourpy.contour_generator(x1, x2, logits[..., i] - logits[..., j]).lines(0.0)
    lines = [np.asarray(line, dtype=float) for line in lines if len(line) > 1]
    valid = []
    for line in lines:
        z = _logits(model, line)
        others = np.delete(z, [i, j], axis=1)
        if others.shape[1] == 0:
            valid.append(np.ones(len(line), dtype=bool))
        else:
            valid.append(np.maximum(z[:, i], z[:, j]) >= others.max(axis=1))
    return lines, valid


def plot_tie_curve(model, ax: Axes, source: int, target: int, *, xlim, ylim, resolution: int = 300,
                   color: str = "k", linewidth: float = 2.0, label: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw the curve ``z_i(x) = z_j(x)`` of :func:`tie_curve`: solid where eq. 4 holds, dotted where not.

    Parameters
    ----------
    model : keras.Model or NetworkParams
        A network with two input features.
    ax : matplotlib.axes.Axes
    source, target : int
        Classes ``i`` and ``j``.
    xlim, ylim : (float, float)
    resolution : int
        Grid points per axis.
    color : str
    linewidth : float
    label : str, optional
        Legend label of the solid part; the dotted part is labelled "... (a third class wins)".

    Returns
    -------
    points : ndarray, shape (m, 2)
        All vertices of the curve.
    valid : ndarray of bool, shape (m,)
        Where eq. 4 holds.
    """
    lines, valid = tie_curve(model, source, target, xlim=xlim, ylim=ylim, resolution=resolution)
    if not lines:
        return np.empty((0, 2)), np.empty(0, dtype=bool)
    solid, dotted = [], []
    for line, ok in zip(lines, valid):
        # Runs of vertices with the same verdict, each drawn as one polyline (so that the dots
        # of a dotted run are spaced evenly); neighbouring runs share their end vertex.
        cuts = np.flatnonzero(ok[1:] != ok[:-1]) + 1
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(line)]):
            run = line[max(start - 1, 0):stop]
            if len(run) > 1:
                (solid if ok[start] else dotted).append(run)
    ax.add_collection(LineCollection(solid, colors=color, linewidths=linewidth, zorder=2, label=label))
    ax.add_collection(LineCollection(dotted, colors=color, linewidths=linewidth, linestyles=":", zorder=2,
                                     label=None if label is None else f"{label} (a third class wins)"))
    return np.concatenate(lines), np.concatenate(valid)
