"""Reading a set of closest flip points: trust, principal directions and influential features.

The analyses of sec. 3.2-3.4 and 5 of Yousefzadeh & O'Leary, *Interpreting Neural Networks
Using Flip Points* (arXiv 2019), on plain arrays:

- **Trust** (sec. 3.2).  A small distance to the closest flip point flags a classification
  that a small change of the input would overturn.  :func:`trust_frame` puts, per input, the
  label, the prediction, the softmax score and the distance side by side;
  :func:`detection_roc` and :func:`detection_auroc` measure how well a confidence score (the
  distance, or the softmax score) singles out the mistakes.
- **Directions** (sec. 3.1).  :func:`flip_directions` gives ``x_hat - x``, the least change of
  each input that flips the decision.
- **Influential features** (sec. 3.4).  :func:`principal_directions` is PCA of a matrix of
  directions, one row per input; :func:`leading_features` names the features with the largest
  loadings of a component; :func:`rank_revealing_qr` (QR with column pivoting) gives the
  numerical rank of the directions and the features that never move.
- **Paper and book** (every chapter's side-by-side table).  :func:`share_interval`,
  :func:`mean_interval` and :func:`bootstrap_interval` give 95% intervals of this book's
  estimates, and :func:`verdict` judges a claim of a paper against one of them by the criterion
  stated in its docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "PrincipalDirections",
    "RankRevealingQR",
    "detection_auroc",
    "detection_roc",
    "flip_directions",
    "leading_features",
    "principal_directions",
    "rank_revealing_qr",
    "share_interval",
    "bootstrap_interval",
    "mean_interval",
    "trust_frame",
    "verdict",
    "VERDICTS",
]


# ---------------------------------------------------------------------------------------------
# Directions


def flip_directions(x, result) -> np.ndarray:
    """Directions ``x_hat - x`` from each input to its flip point(s); NaN where none was found.

    Parameters
    ----------
    x : array_like, shape (n, n_features)
        The inputs given to :func:`fliplib.closest_flip_points`.
    result : FlipResult
        Its answer: ``result.x`` of shape ``(n, n_features)``, or ``(n, r, n_features)`` with
        several targets per input (``target="all"``; use ``result.closest()`` for one per input).

    Returns
    -------
    ndarray, shape like ``result.x``
        ``result.x - x``; the rows of unsuccessful problems (``result.success`` False, including
        the source class's own entry with ``target="all"``) are NaN, so that no failed solve is
        mistaken for a direction.  Select ``directions[result.success]`` before PCA.
    """
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(result.x, dtype=np.float64)
    success = np.asarray(result.success, dtype=bool)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, n_features), got {x.shape}")
    if x_hat.ndim == 3:
        x = x[:, None, :]
    elif x_hat.ndim != 2:
        raise ValueError(f"result.x must have 2 or 3 dimensions, got shape {x_hat.shape}")
    if x_hat.shape[0] != x.shape[0] or x_hat.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"x of shape {x.shape[::2] if x.ndim == 3 else x.shape} does not match the flip points of shape "
            f"{x_hat.shape}: pass the inputs the result was computed for"
        )
    if success.shape != x_hat.shape[:-1]:
        raise ValueError(f"result.success has shape {success.shape}, expected {x_hat.shape[:-1]}")
    return np.where(success[..., None], x_hat - x, np.nan)


# ---------------------------------------------------------------------------------------------
# PCA and rank-revealing QR of a matrix of directions


def _direction_matrix(directions, *, name: str = "directions") -> np.ndarray:
    a = np.asarray(directions, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a matrix (one row per input), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        rows = np.flatnonzero(~np.all(np.isfinite(a), axis=1))
        raise ValueError(
            f"{name} holds NaN or inf in {rows.size} rows (first: row {rows[0]}); these are usually failed "
            "flip points: keep only the successful ones, e.g. directions[result.success]"
        )
    return a


@dataclass(frozen=True)
class PrincipalDirections:
    """Principal components of a matrix of flip directions (see :func:`principal_directions`).

    Attributes
    ----------
    components : ndarray, shape (k, n_features)
        Orthonormal principal directions, the most important first.  The sign of each is fixed
        so that its largest-magnitude entry is positive.
    explained_variance : ndarray, shape (k,)
        Variance of the (centred) directions along each component, ``s**2 / (m - 1)``; without
        centring, the mean square ``s**2 / m``.
    explained_variance_ratio : ndarray, shape (k,)
        Each component's share of the total (all components, not only the ``k`` kept).
    singular_values : ndarray, shape (k,)
        The singular values ``s`` of the (centred) matrix.
    mean : ndarray, shape (n_features,)
        The mean direction that was subtracted (zeros without centring).
    n_samples : int
        Number of directions ``m``.
    """

    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    singular_values: np.ndarray
    mean: np.ndarray
    n_samples: int


def principal_directions(directions, *, n_components: int | None = None, center: bool = True) -> PrincipalDirections:
    """PCA of a matrix of directions (one row ``x_hat - x`` per input), by the SVD (sec. 3.4).

    Parameters
    ----------
    directions : array_like, shape (m, n_features)
        Finite directions, e.g. ``flip_directions(x, result)[result.success]``.
    n_components : int, optional
        Components to keep; default ``min(m, n_features)``.
    center : bool
        Subtract the mean direction first (ordinary PCA, as MATLAB's ``pca`` and scikit-learn
        do).  With ``center=False`` the first component is the dominant direction itself, close
        to the mean direction when the directions agree.

    Returns
    -------
    PrincipalDirections
    """
    a = _direction_matrix(directions)
    m, d = a.shape
    if center and m < 2:
        raise ValueError("PCA with centring needs at least 2 directions, got 1")
    k_max = min(m, d)
    k = k_max if n_components is None else int(n_components)
    if n_components is not None and (k != n_components or not 1 <= k <= k_max):
        raise ValueError(f"n_components must be an integer in [1, {k_max}] for a {m} x {d} matrix, got {n_components!r}")
    mean = a.mean(axis=0) if center else np.zeros(d)
    _, s, vt = np.linalg.svd(a - mean, full_matrices=False)
    # Deterministic signs: the largest-magnitude entry of every component is positive.
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    total = float(np.sum(s**2))
    ddof = 1 if center else 0
    return PrincipalDirections(
        components=vt[:k],
        explained_variance=s[:k] ** 2 / (m - ddof),
        explained_variance_ratio=s[:k] ** 2 / total if total > 0 else np.zeros(k),
        singular_values=s[:k],
        mean=mean,
        n_samples=m,
    )


def _feature_names(feature_names: Sequence[str] | None, d: int) -> list[str]:
    if feature_names is None:
        return [f"feature {i}" for i in range(d)]
    names = [str(name) for name in feature_names]
    if len(names) != d:
        raise ValueError(f"{len(names)} feature names for {d} features")
    return names


def leading_features(component, feature_names: Sequence[str] | None = None, *, k: int = 5) -> pd.DataFrame:
    """The ``k`` features with the largest loadings (in magnitude) of a direction or component.

    Parameters
    ----------
    component : array_like, shape (n_features,)
        A principal component, or any direction such as one ``x_hat - x``.
    feature_names : sequence of str, optional
        Names of the features (default ``"feature 0"``, ...).
    k : int
        How many features to list (at most ``n_features``).

    Returns
    -------
    DataFrame
        Rows ranked 1..k by decreasing ``|loading|``, columns ``feature``, ``index`` (the
        feature's position), ``loading`` (signed) and ``share`` (``loading**2 / ||component||**2``,
        the fraction of the squared length carried by the feature).
    """
    c = np.asarray(component, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"component must be a non-empty 1-D array, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("component holds NaN or inf (a failed flip point?)")
    names = _feature_names(feature_names, c.size)
    if int(k) != k or not 1 <= k <= c.size:
        raise ValueError(f"k must be an integer in [1, {c.size}], got {k!r}")
    order = np.argsort(-np.abs(c), kind="stable")[: int(k)]
    norm2 = float(np.sum(c**2))
    frame = pd.DataFrame(
        {
            "feature": [names[i] for i in order],
            "index": order,
            "loading": c[order],
            "share": c[order] ** 2 / norm2 if norm2 > 0 else np.zeros(len(order)),
        },
        index=pd.RangeIndex(1, len(order) + 1, name="rank"),
    )
    return frame


@dataclass(frozen=True)
class RankRevealingQR:
    """Column-pivoted QR of a matrix of directions (see :func:`rank_revealing_qr`).

    Attributes
    ----------
    rank : int
        Numerical rank: the number of ``|R_kk|`` above ``rtol * |R_00|``.
    pivots : ndarray of int, shape (n_features,)
        Features in the order the pivoting chose them, the most independent first.
    r_diagonal : ndarray, shape (min(m, n_features),)
        ``|R_kk|``, non-increasing.
    basis : ndarray of int
        ``pivots[:rank]``: features whose columns span the directions.
    redundant : ndarray of int
        ``pivots[rank:]``: features whose columns are (numerically) combinations of the basis.
    no_influence : ndarray of int
        Features whose column is numerically zero: no direction moves them (sorted).
    """

    rank: int
    pivots: np.ndarray
    r_diagonal: np.ndarray
    basis: np.ndarray
    redundant: np.ndarray
    no_influence: np.ndarray


def rank_revealing_qr(directions, *, rtol: float | None = None) -> RankRevealingQR:
    """Numerical rank of a matrix of directions and the features that carry it (QR with pivoting).

    ``A P = Q R`` with the column permutation ``P`` chosen greedily so that ``|R_kk|`` does not
    increase (Businger-Golub pivoting, ``scipy.linalg.qr(..., pivoting=True)``, a rank-revealing
    QR in the sense of Chan 1987 for all practical matrices).  Features are columns, so the
    first pivots are the features that move most independently, and a feature whose column is
    zero, one that no flip direction changes, has no influence on this flip.

    Parameters
    ----------
    directions : array_like, shape (m, n_features)
        Finite directions, one row per input.
    rtol : float, optional
        Relative threshold for the rank and for zero columns; default ``max(m, n) * eps``.

    Returns
    -------
    RankRevealingQR
    """
    from scipy.linalg import qr

    a = _direction_matrix(directions)
    m, d = a.shape
    tol = max(m, d) * np.finfo(np.float64).eps if rtol is None else float(rtol)
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"rtol must be a non-negative number, got {rtol!r}")
    r, pivots = qr(a, mode="r", pivoting=True)
    diag = np.abs(np.diag(r))
    scale = diag[0] if diag.size else 0.0
    rank = int(np.sum(diag > tol * scale)) if scale > 0 else 0
    column_norms = np.linalg.norm(a, axis=0)
    largest = column_norms.max()
    zero = column_norms <= tol * largest if largest > 0 else np.ones(d, dtype=bool)
    return RankRevealingQR(
        rank=rank,
        pivots=pivots,
        r_diagonal=diag,
        basis=pivots[:rank],
        redundant=pivots[rank:],
        no_influence=np.flatnonzero(zero),
    )


# ---------------------------------------------------------------------------------------------
# Trust: distance and softmax as detectors of mistakes


def trust_frame(proba, labels, result) -> pd.DataFrame:
    """Per input: label, prediction, softmax score and distance to the closest flip point.

    Parameters
    ----------
    proba : array_like, shape (n, n_classes)
        Softmax outputs, e.g. ``fliplib.predict_proba(model, x)``.
    labels : array_like of int, shape (n,)
        True classes.
    result : FlipResult
        Closest flip points of the same inputs, with one target per input or ``target="all"``
        (then the closest successful one per input is used).

    Returns
    -------
    DataFrame
        One row per input: ``label``, ``predicted`` (the argmax of ``proba``), ``correct``,
        ``softmax`` (the largest probability, the usual confidence score), ``distance`` (NaN
        where no flip point was found) and ``flip_found``.
    """
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"proba must have shape (n, n_classes) with at least 2 classes, got {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},), got {y.shape}")
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be integer classes in [0, {p.shape[1]})")
    closest = result.closest() if np.ndim(result.distance) == 2 else result
    distance = np.asarray(closest.distance, dtype=np.float64)
    found = np.asarray(closest.success, dtype=bool)
    if distance.shape != (p.shape[0],):
        raise ValueError(f"result holds {distance.shape[0]} inputs, proba {p.shape[0]}: pass the same inputs")
    predicted = p.argmax(axis=1)
    return pd.DataFrame(
        {
            "label": y.astype(np.int64),
            "predicted": predicted,
            "correct": predicted == y,
            "softmax": p.max(axis=1),
            "distance": np.where(found, distance, np.nan),
            "flip_found": found,
        }
    )


def _detection_inputs(scores, is_mistake) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    mistake = np.asarray(is_mistake)
    if s.ndim != 1 or mistake.shape != s.shape:
        raise ValueError(f"scores and is_mistake must be 1-D of the same length, got {s.shape} and {mistake.shape}")
    if mistake.dtype != bool:
        if not np.all(np.isin(mistake, (0, 1))):
            raise ValueError("is_mistake must be boolean (True for a mistake)")
        mistake = mistake.astype(bool)
    if np.any(np.isnan(s)):
        raise ValueError(
            f"scores hold {int(np.isnan(s).sum())} NaN values (failed flip points?); drop them first"
        )
    if mistake.all() or not mistake.any():
        raise ValueError(
            f"detecting mistakes needs both mistakes and correct classifications; got {int(mistake.sum())} "
            f"mistakes among {mistake.size} inputs"
        )
    return s, mistake


def detection_roc(scores, is_mistake) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of flagging as mistakes the inputs whose confidence score is at most a threshold.

    Parameters
    ----------
    scores : array_like, shape (n,)
        A confidence score, larger meaning more trustworthy: the distance to the closest flip
        point, or the softmax score.
    is_mistake : array_like of bool, shape (n,)
        True where the classification is wrong.

    Returns
    -------
    false_alarm_rate, detection_rate, thresholds : ndarray
        For each threshold ``t``, increasing from ``-inf`` (nothing flagged) to the largest
        score (everything flagged): the fraction of correct classifications and the fraction
        of mistakes with ``score <= t`` (``sklearn.metrics.roc_curve`` on ``-scores``).
    """
    from sklearn.metrics import roc_curve

    s, mistake = _detection_inputs(scores, is_mistake)
    fpr, tpr, thresholds = roc_curve(mistake, -s, drop_intermediate=False)
    return fpr, tpr, -thresholds


def detection_auroc(scores, is_mistake) -> float:
    """Area under the ROC curve of :func:`detection_roc`.

    The probability that a randomly drawn mistake has a smaller score than a randomly drawn
    correct classification (ties count one half): 1 separates perfectly, 0.5 is chance.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Confidence scores, larger meaning more trustworthy (distance, softmax score).
    is_mistake : array_like of bool, shape (n,)
        True where the classification is wrong.

    Returns
    -------
    float
    """
    from sklearn.metrics import roc_auc_score

    s, mistake = _detection_inputs(scores, is_mistake)
    return float(roc_auc_score(mistake, -s))


# ---------------------------------------------------------------------------------------------
# Paper and book: intervals and verdicts

#: The three verdicts of a paper-vs-book row (see :func:`verdict`).
VERDICTS = ("reproduced", "not reproduced", "inconclusive at this scale")


def share_interval(successes, n, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a share ``successes / n`` (a binomial proportion).

    Parameters
    ----------
    successes, n : int
        Counts, ``0 <= successes <= n``, ``n >= 1``.
    level : float
        Coverage of the interval.

    Returns
    -------
    (float, float)
        The interval's ends, within ``[0, 1]``.
    """
    from scipy.stats import norm

    k, n = int(successes), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1; got successes={k}, n={n}")
    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    # The ends are 0 and 1 exactly when no unit, or every unit, succeeded (rounding aside).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def bootstrap_interval(values, statistic=np.mean, *, n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0, strata=None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)``, resampling the values.

    Parameters
    ----------
    values : array_like, shape (n,) or (n, k)
        The sample, one row per independent unit (input, seed, ...).
    statistic : callable
        Maps a resampled array (same shape as ``values``) to a number; the mean by default.
    n_boot : int
        Resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling.
    strata : array_like, shape (n,), optional
        A group label per row: each resample draws every group's rows from that group alone, so
        the groups keep their sizes (a stratified bootstrap).  For a statistic that compares
        groups, such as an AUROC of mistakes against correct answers, whose groups were not
        drawn at random proportions.  Groups are drawn in the order of ``np.unique(strata)``.

    Returns
    -------
    (float, float)
    """
    v = np.asarray(values, dtype=float)
    if v.ndim not in (1, 2) or len(v) < 2:
        raise ValueError(f"values must hold at least two rows (1-D or 2-D); got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    groups = [np.arange(len(v))]
    if strata is not None:
        labels = np.asarray(strata)
        if labels.shape != (len(v),):
            raise ValueError(f"strata must hold one label per row of values ({len(v)}), got shape {labels.shape}")
        groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    rng = np.random.default_rng(seed)

    def resample():
        return np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])

    stats = [statistic(v[resample()]) for _ in range(n_boot)]
    low, high = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def mean_interval(values, *, level: float = 0.95, spread=None) -> tuple[float, float]:
    """Student's t interval of the mean of a few independent runs (seeds, splits).

    Parameters
    ----------
    values : array_like, shape (n,)
        One value per run, ``n >= 2``.
    level : float
        Coverage of the interval.
    spread : array_like, optional
        Runs that measure the noise instead, when ``values`` holds a single run: the interval is
        then that of one new run around ``values[0]``, ``values[0] +- t s sqrt(1 + 1/m)``, with
        ``s`` and ``m`` the standard deviation and size of ``spread`` (a prediction interval).

    Returns
    -------
    (float, float)
    """
    from scipy.stats import t

    v = np.asarray(values, dtype=float).ravel()
    ref = v if spread is None else np.asarray(spread, dtype=float).ravel()
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(ref))):
        raise ValueError("values and spread must be finite")
    if len(ref) < 2:
        raise ValueError(f"need at least two runs to measure the spread; got {len(ref)}")
    if spread is not None and len(v) != 1:
        raise ValueError(f"with spread, values holds one run; got {len(v)}")
    factor = np.sqrt(1 / len(v)) if spread is None else np.sqrt(1 + 1 / len(ref))
    half = float(t.ppf(0.5 + level / 2, len(ref) - 1)) * ref.std(ddof=1) * factor
    return float(v.mean() - half), float(v.mean() + half)


def verdict(interval, *, value=None, at_least=None, at_most=None, tolerance: float = 0.0) -> str:
    """The verdict on a paper's claim, given this book's 95% interval for the same quantity.

    One criterion for every chapter.  A claim is a *value* (``value``: "97.98%", "mean 1.06")
    or a *bound* (``at_least`` / ``at_most``: "> 73%", "A beats B", i.e. a difference at least
    0).  With the interval ``[low, high]`` widened by ``tolerance`` on each side:

    - a value is **reproduced** when it lies in the interval, **not reproduced** otherwise;
    - a bound is **reproduced** when the whole interval satisfies it, **not reproduced** when
      none of it does, and **inconclusive at this scale** when the interval straddles it (a
      larger sample would decide).

    Parameters
    ----------
    interval : (float, float)
        ``(low, high)``, ``low <= high``.
    value, at_least, at_most : float, optional
        Exactly one: the paper's claim.
    tolerance : float
        A margin of agreement beyond the interval, where the claim allows one (the chapters use
        one percentage point for accuracies: two trainings of one recipe differ by that much).

    Returns
    -------
    str
        One of :data:`VERDICTS`.
    """
    low, high = (float(v) for v in interval)
    claims = {"value": value, "at_least": at_least, "at_most": at_most}
    given = [k for k, v in claims.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of value, at_least, at_most; got {given or 'none'}")
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"interval must be finite with low <= high; got ({low}, {high})")
    if tolerance < 0:
        raise ValueError(f"tolerance must be nonnegative; got {tolerance}")
    low, high = low - tolerance, high + tolerance
    claim = float(claims[given[0]])
    if given[0] == "value":
        return VERDICTS[0] if low <= claim <= high else VERDICTS[1]
    if given[0] == "at_most":  # x <= c  is  -x >= -c
        low, high, claim = -high, -low, -claim
    if low >= claim:
        return VERDICTS[0]
    if high < claim:
        return VERDICTS[1]
    return VERDICTS[2]
