"""Wavelet features of images: the inputs the papers feed to their networks.

The networks of the papers see wavelet coefficients, not pixels:

- MNIST: 2-D Haar wavelets, the 100 most significant coefficients chosen by QR with column
  pivoting of the training set's coefficient matrix (Yousefzadeh & O'Leary 2020, sec. 6.1);
- CIFAR-10 planes and ships: 2-D Daubechies-1 (= Haar) per colour channel, 2,500 coefficients
  (same paper, sec. 6.2), or 3-D Daubechies-1 on the ``(H, W, C)`` block, 200 coefficients out of
  4096 ("Investigating decision boundaries", sec. 3 and fig. 1).

:class:`WaveletFeatures` computes these features with PyWavelets, and maps coefficient vectors
(flip points, or directions to them) back to images.

Pivoted QR, the selection rule
------------------------------
Let ``A`` be the ``n_images x n_all`` matrix of all wavelet coefficients of the training images.
``scipy.linalg.qr(A, pivoting=True)`` (LAPACK ``geqp3``, Businger-Golub) picks first the column
of largest 2-norm, then, again and again, the column with the largest norm once the columns
already picked are projected out.  The first ``k`` pivots are the ``k`` "most significant"
coefficients.  In exact arithmetic these pivots depend on ``A`` only through ``A^T A``;
:meth:`WaveletFeatures.fit` therefore accumulates ``A^T A`` block by block and reads the pivots
off its pivoted Cholesky factorisation (:func:`gram_pivots`), the same rule at a tenth of the
cost of ``geqp3`` on ``A`` (:func:`qr_pivots`, kept as the reference).  On MNIST (60,000 x 784,
k = 100) and on the CIFAR-10 planes and ships (10,000 x 3072 or 4096, k up to 2,500) both give
identical pivots.
Row order does not matter in exact arithmetic; in floating point it may where two residual
norms are within rounding of each other.  Pivots past the numerical rank of ``A`` are
arbitrary (a warning says so).

Orthonormality
--------------
With an orthogonal wavelet (Haar, ``db``, ``coif``; ``sym`` to about 1e-11, as PyWavelets
tabulates its filters to about 12 digits; not ``dmey``, an FIR approximation) and
``mode="periodization"``, the transform is an orthogonal change of basis whenever no axis needs
padding, i.e. every transformed axis has a length divisible by ``2**level``.  Then all coefficients together
round-trip exactly and preserve 2-norm distances, and :meth:`WaveletFeatures.to_pixels` with
``delta=True`` preserves the norm of a change in the chosen coefficients.  ``isometric_`` says
whether this holds.  It does **not** hold for the 3-D transform of a 3-channel image: the
colour axis has odd length, PyWavelets pads it to 4 by repeating the last channel, and one gets
``32 * 32 * 4 = 4096`` coefficients for ``3072`` pixels (the 4096 of the paper's fig. 1, as
MATLAB's default symmetric extension gives the same Haar coefficients).  The round trip is
still exact there, but norms are not preserved.
"""

from __future__ import annotations

import warnings

import numpy as np
import pywt
import scipy.linalg

from ._checks import positive_int

__all__ = ["NotFittedError", "WaveletFeatures", "gram_pivots", "qr_pivots"]

# Images per block when accumulating A^T A in fit: bounds the memory to one block of coefficients.
_GRAM_CHUNK = 4096


class NotFittedError(ValueError, AttributeError):
    """A method that needs :meth:`WaveletFeatures.fit` was called before it (as in scikit-learn)."""


class WaveletFeatures:
    """Wavelet coefficients of images, the most significant ones chosen by pivoted QR.

    Parameters
    ----------
    n_coefficients : int or None
        How many coefficients to keep.  ``None`` keeps all of them, in their natural order, and
        :meth:`fit` then runs no QR.
    wavelet : str or pywt.Wavelet, default "haar"
        A discrete wavelet (``"haar"`` and ``"db1"`` are the same).
    ndim : {2, 3}, default 2
        ``2``: a 2-D transform of each ``(H, W)`` image, or of each channel of an ``(H, W, C)``
        image.  ``3``: one 3-D transform of each ``(H, W, C)`` image.
    level : int or None, default None
        Decomposition level.  ``None`` takes the deepest level, at most PyWavelets' maximum
        (:func:`pywt.dwtn_max_level`), at which no transformed axis needs padding, so that the
        transform is orthonormal (level 2 for 28 x 28 MNIST, 784 coefficients; level 5 for 32 x 32
        CIFAR); and level 1 if there is none (3-D transform of 3 colour channels).
    mode : str, default "periodization"
        PyWavelets signal extension mode.  Only ``"periodization"`` gives an orthonormal
        transform for wavelets longer than Haar.
    max_fit_samples : int or None, default None
        Fit on at most this many images, drawn without replacement (and kept in their original
        order) with ``numpy.random.default_rng(seed)``.  The fit time is about proportional to
        the number of images, but the choice then depends on the subsample.  Measured: of the 100
        MNIST coefficients, those chosen from 10,000 images share 98-99 with those from all
        60,000 (97-98 from 5,000); of 2,500 per-channel CIFAR coefficients, 2,381 from 5,000 of
        the 10,000 images; but of 200 3-D CIFAR coefficients out of 4096, only 89 (the 3-D
        choice is fragile: adding the mirrored images changes 130 of the 200).  The full fit
        takes seconds (measured on 2 cores shared with other jobs: MNIST 60,000 images 3-7 s;
        CIFAR 10,000 images 4-7 s per channel, 13 s in 3-D; twice that with mirrored images),
        so prefer it.
    seed : int, default 0
        Seed of the subsample; unused when all images are used.

    Attributes
    ----------
    indices_ : ndarray of int, shape (n_coefficients,)
        The chosen coefficients, as indices into the flat vector of all coefficients (see
        :meth:`all_coefficients`), **in pivot order**: most significant first, so that
        ``transform(x)[:, :j]`` are the ``j`` most significant and nested choices come from one fit.
    n_all_coefficients_ : int
        Number of all wavelet coefficients of one image.
    image_shape_ : tuple of int
        Shape of one image, ``(H, W)`` or ``(H, W, C)``.
    level_ : int
        The decomposition level used.
    isometric_ : bool
        True when the wavelet's filters are orthonormal and no axis needs padding: the transform
        with all coefficients is then orthonormal (see the module docstring).
    fit_rows_ : ndarray of int
        The images (row indices) the QR was computed on.

    Notes
    -----
    Images always carry a leading batch axis: ``(n, H, W)`` or ``(n, H, W, C)``.  No scaling is
    applied, so coefficients are in the units of the pixels (0-255 for ``uint8`` images).
    The flat coefficient vector lists the approximation band, then the detail bands from coarsest
    to finest (keys sorted within a level, as in :func:`pywt.wavedecn`), each band in C order over
    its ``(h, w)`` or ``(h, w, c)`` positions (colour fastest for the per-channel 2-D transform).
    """

    def __init__(
        self,
        n_coefficients: int | None,
        *,
        wavelet: str | pywt.Wavelet = "haar",
        ndim: int = 2,
        level: int | None = None,
        mode: str = "periodization",
        max_fit_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if n_coefficients is not None:
            positive_int("n_coefficients", n_coefficients)
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
        if level is not None:
            positive_int("level", level, allow_zero=True)
        if max_fit_samples is not None:
            positive_int("max_fit_samples", max_fit_samples)
        pywt.Modes.from_object(mode)  # raises ValueError on an unknown mode
        self.n_coefficients = n_coefficients
        self.wavelet = wavelet if isinstance(wavelet, pywt.Wavelet) else pywt.Wavelet(wavelet)
        self.ndim = ndim
        self.level = level
        self.mode = mode
        self.max_fit_samples = max_fit_samples
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"WaveletFeatures({self.n_coefficients!r}, wavelet={self.wavelet.name!r}, ndim={self.ndim}, "
            f"level={self.level!r}, mode={self.mode!r}, max_fit_samples={self.max_fit_samples!r}, seed={self.seed!r})"
        )

    # ------------------------------------------------------------------ fitting

    def fit(self, images) -> WaveletFeatures:
        """Choose the coefficients by pivoted QR of the training images' coefficient matrix.

        Parameters
        ----------
        images : array_like, shape (n, H, W) or (n, H, W, C)
            Training images (any real dtype; NaN and inf are rejected).

        Returns
        -------
        self
        """
        images = _check_images(images, ndim=self.ndim, image_shape=None, name="images")
        if len(images) == 0:
            raise ValueError("fit needs at least one image, got an empty batch")
        image_shape = images.shape[1:]
        level = self._resolve_level(image_shape)
        zeros = np.zeros((1, *image_shape))
        coeffs = self._wavedec(zeros, level)
        n_all = _flatten(coeffs).shape[1]
        n_keep = n_all if self.n_coefficients is None else self.n_coefficients
        if n_keep > n_all:
            raise ValueError(
                f"n_coefficients={n_keep} is more than the {n_all} wavelet coefficients "
                f"of a {image_shape} image at level {level}"
            )
        rows = self._fit_rows(len(images))
        if self.n_coefficients is None:
            indices = np.arange(n_all)
        else:
            indices = gram_pivots(self._gram(images[rows], level, n_all), n_keep)
        # Set the fitted state only now, so that a failed fit leaves none half-set.
        self.image_shape_ = image_shape
        self.level_ = level
        self.n_all_coefficients_ = n_all
        self.isometric_ = _orthonormal_filters(self.wavelet) and n_all == zeros.size
        self.fit_rows_ = rows
        self._band_shapes = _band_shapes(coeffs)
        self.indices_ = indices
        return self

    def _resolve_level(self, image_shape: tuple[int, ...]) -> int:
        if self.level is not None:
            return int(self.level)
        shape = [image_shape[i] for i in range(self.ndim)]
        deepest = pywt.dwtn_max_level(shape, self.wavelet)
        even = 0
        while even < deepest and all(s % 2 ** (even + 1) == 0 for s in shape):
            even += 1
        return max(1, even)

    def _gram(self, images: np.ndarray, level: int, n_all: int) -> np.ndarray:
        """``A^T A`` for the coefficient matrix ``A`` of ``images``, a chunk of rows at a time."""
        gram = np.zeros((n_all, n_all))
        for start in range(0, len(images), _GRAM_CHUNK):
            block = _flatten(self._wavedec(images[start : start + _GRAM_CHUNK], level))
            gram += block.T @ block
        return gram

    def _fit_rows(self, n_images: int) -> np.ndarray:
        if self.max_fit_samples is None or self.max_fit_samples >= n_images:
            return np.arange(n_images)
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n_images, size=self.max_fit_samples, replace=False))

    # --------------------------------------------------------------- transforms

    def all_coefficients(self, images) -> np.ndarray:
        """All wavelet coefficients of each image, shape ``(n, n_all_coefficients_)``, float64."""
        self._check_fitted("all_coefficients")
        images = _check_images(images, ndim=self.ndim, image_shape=self.image_shape_, name="images")
        if len(images) == 0:
            return np.zeros((0, self.n_all_coefficients_))
        return _flatten(self._wavedec(images, self.level_))

    def transform(self, images) -> np.ndarray:
        """The chosen coefficients of each image.

        Parameters
        ----------
        images : array_like, shape (n, *image_shape_)

        Returns
        -------
        ndarray, shape (n, len(indices_)), float64
            Columns in the order of :attr:`indices_`.
        """
        self._check_fitted("transform")
        return self.all_coefficients(images)[:, self.indices_]

    def to_pixels(self, coefficients, *, reference=None, delta: bool = False) -> np.ndarray:
        """Map vectors of chosen coefficients back to images.

        Parameters
        ----------
        coefficients : array_like, shape (n, len(indices_))
            Values of the chosen coefficients, in the order of :attr:`indices_`.
        reference : array_like, shape image_shape_ or (n, *image_shape_), optional
            Image(s) that supply the coefficients not chosen; zeros if omitted.  With
            ``reference=x``, ``to_pixels(transform(x), reference=x)`` gives back ``x``.
        delta : bool, default False
            If True, ``coefficients`` are a *change* in the chosen coefficients and the result is
            the change in pixels: a linear map, which preserves 2-norms when ``isometric_``.
            ``reference`` must then be omitted.

        Returns
        -------
        ndarray, shape (n, *image_shape_), float64
        """
        self._check_fitted("to_pixels")
        coefficients = _check_finite_array(coefficients, name="coefficients")
        n_keep = len(self.indices_)
        if coefficients.ndim != 2 or coefficients.shape[1] != n_keep:
            raise ValueError(
                f"coefficients must have shape (n, {n_keep}), got {coefficients.shape}"
                + (" (add a batch axis: c[None])" if coefficients.shape == (n_keep,) else "")
            )
        n = len(coefficients)
        if delta and reference is not None:
            raise ValueError(
                "reference has no effect with delta=True: a change in coefficients maps to a change in pixels"
            )
        if reference is None:
            full = np.zeros((n, self.n_all_coefficients_))
        else:
            reference = np.asarray(reference)
            if reference.shape == self.image_shape_:
                reference = reference[None]
            reference = _check_images(reference, ndim=self.ndim, image_shape=self.image_shape_, name="reference")
            full = self.all_coefficients(reference)
            if len(full) not in (1, n):
                raise ValueError(f"reference holds {len(full)} images for {n} coefficient vectors; give 1 or {n}")
            full = np.repeat(full, n, axis=0) if len(full) == 1 else full
        full[:, self.indices_] = coefficients
        return self._waverec(full)

    # ------------------------------------------------------------------ helpers

    def _axes(self) -> tuple[int, ...]:
        return (1, 2) if self.ndim == 2 else (1, 2, 3)

    def _wavedec(self, images: np.ndarray, level: int) -> list:
        return pywt.wavedecn(
            images.astype(np.float64, copy=False), self.wavelet, mode=self.mode, level=level, axes=self._axes()
        )

    def _waverec(self, flat: np.ndarray) -> np.ndarray:
        if len(flat) == 0:
            return np.zeros((0, *self.image_shape_))
        coeffs = _unflatten(flat, self._band_shapes)
        images = pywt.waverecn(coeffs, self.wavelet, mode=self.mode, axes=self._axes())
        # Odd axes were padded by one sample: drop it.
        return images[(slice(None), *(slice(0, s) for s in self.image_shape_))]

    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "indices_"):
            raise NotFittedError(f"WaveletFeatures.{method} called before fit: call fit(images) first")


def qr_pivots(matrix, k: int) -> np.ndarray:
    """The first ``k`` column pivots of ``scipy.linalg.qr(matrix, pivoting=True)`` (LAPACK ``geqp3``).

    The reference implementation of the selection rule, kept to check :func:`gram_pivots`
    against; it is about ten times slower on the papers' data sets.

    Parameters
    ----------
    matrix : array_like, shape (n_samples, n_columns)
    k : int

    Returns
    -------
    ndarray of int, shape (k,)
        Column indices, first pivot first.  Warns when ``k`` exceeds the numerical rank.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    r, perm = scipy.linalg.qr(matrix, mode="r", pivoting=True)
    diagonal = np.abs(np.diag(r))
    rank = int(np.sum(diagonal > diagonal[0] * max(matrix.shape) * np.finfo(float).eps)) if diagonal.size else 0
    _warn_beyond_rank(k, rank)
    return perm[:k]


def gram_pivots(gram, k: int) -> np.ndarray:
    """The first ``k`` column pivots of QR with column pivoting of ``A``, from ``gram = A^T A``.

    Pivoted QR (Businger-Golub, LAPACK ``geqp3``) picks as pivot ``j`` the column with the largest
    residual norm ``||a_i - Q_j Q_j^T a_i||``, ``Q_j`` spanning the columns already picked.  The
    squared residual norms are the diagonal of the Schur complement of ``A^T A``, which is what
    pivoted Cholesky (LAPACK ``dpstrf``) maximises at each step; so in exact arithmetic both pick
    the same columns, in the same order, and ties go to the lowest index in both.  Forming
    ``A^T A`` is a matrix product and ``dpstrf`` is blocked, so this takes seconds where ``geqp3``
    on the tall ``A`` (memory-bound matrix-vector products) takes about ten times longer.  The
    price: squared norms below about ``m * eps`` times the largest are lost, so the
    factorisation stops at that numerical rank, and the pivots past it are arbitrary (a warning
    says so).  Identically zero columns (zero diagonal) come last, in index order.

    Parameters
    ----------
    gram : array_like, shape (m, m)
        ``A^T A``, symmetric positive semidefinite (only the lower triangle is read).
    k : int

    Returns
    -------
    ndarray of int, shape (k,)
        Column indices, first pivot first.
    """
    gram = np.asarray(gram, dtype=np.float64)
    diagonal = np.diag(gram)
    nonzero = np.flatnonzero(diagonal > 0)
    zero = np.flatnonzero(~(diagonal > 0))
    rank = 0
    pivots = np.zeros(0, dtype=int)
    if nonzero.size:
        _, perm, rank, info = scipy.linalg.lapack.dpstrf(gram[np.ix_(nonzero, nonzero)], lower=1)
        if info < 0:
            raise ValueError(f"LAPACK dpstrf rejected argument {-info}")
        pivots = nonzero[perm - 1]
    _warn_beyond_rank(k, rank)
    return np.concatenate([pivots, zero])[:k]


def _warn_beyond_rank(k: int, rank: int) -> None:
    if k > rank:
        warnings.warn(
            f"only {rank} coefficients are linearly independent over the fit images (numerically); "
            f"the last {k - rank} of the {k} chosen are arbitrary",
            stacklevel=3,
        )


def _flatten(coeffs: list) -> np.ndarray:
    """``pywt.wavedecn`` output with a batch axis -> ``(n, n_all)``: approximation, then details."""
    bands = [coeffs[0]] + [detail[key] for detail in coeffs[1:] for key in sorted(detail)]
    return np.concatenate([band.reshape(len(band), -1) for band in bands], axis=1)


def _band_shapes(coeffs: list) -> list:
    """Per-image shapes of the bands, in the structure of ``pywt.wavedecn`` output."""
    return [coeffs[0].shape[1:]] + [{key: detail[key].shape[1:] for key in sorted(detail)} for detail in coeffs[1:]]


def _unflatten(flat: np.ndarray, band_shapes: list) -> list:
    """Inverse of :func:`_flatten`."""
    n = len(flat)
    start = 0

    def take(shape: tuple) -> np.ndarray:
        nonlocal start
        size = int(np.prod(shape))
        band = flat[:, start : start + size].reshape(n, *shape)
        start += size
        return band

    approximation = take(band_shapes[0])
    details = [{key: take(shape) for key, shape in level.items()} for level in band_shapes[1:]]
    return [approximation, *details]


def _orthonormal_filters(wavelet: pywt.Wavelet) -> bool:
    """Whether the wavelet's low-pass filter is orthonormal to its even shifts, to 1e-10.

    True for Haar, ``db``, ``coif`` (to rounding) and ``sym`` (PyWavelets tabulates these to
    about 1e-12); False for biorthogonal wavelets and for ``dmey``, an FIR approximation.
    """
    if not wavelet.orthogonal:
        return False
    h = np.asarray(wavelet.dec_lo, dtype=np.float64)
    shifts = np.array([np.dot(h[2 * k :], h[: len(h) - 2 * k]) for k in range((len(h) + 1) // 2)])
    return bool(np.all(np.abs(shifts - np.eye(1, len(shifts))[0]) < 1e-10))


def _check_finite_array(values, *, name: str) -> np.ndarray:
    values = np.asarray(values)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool) or np.iscomplexobj(values):
        raise ValueError(f"{name} must be real numbers, got dtype {values.dtype}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return values


def _check_images(images, *, ndim: int, image_shape: tuple | None, name: str) -> np.ndarray:
    images = _check_finite_array(images, name=name)
    if image_shape is not None and images.shape[1:] != image_shape:
        expected = ", ".join(map(str, image_shape))
        raise ValueError(f"{name} must have shape (n, {expected}) as in fit, got {images.shape}")
    if ndim == 2 and images.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (n, H, W) or (n, H, W, C) for ndim=2, got {images.shape}")
    if ndim == 3 and images.ndim != 4:
        raise ValueError(f"{name} must have shape (n, H, W, C) for ndim=3, got {images.shape}")
    if any(s == 0 for s in images.shape[1:]):
        raise ValueError(f"{name} have an empty axis: {images.shape}")
    return images
