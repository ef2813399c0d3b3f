"""The tunables of the flip-point solvers, documented once (SciPy's ``options`` of ``minimize``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ._checks import positive_int, positive_number

__all__ = ["FlipOptions"]


@dataclass(frozen=True)
class FlipOptions:
    """Tunables of :func:`closest_flip_points` (and :func:`fliplib.mixed.mixed_flip_points`).

    Pass an instance or a dict of the fields to change: ``options=dict(max_iter=50)``.

    Attributes
    ----------
    eta : int
        Number of uniform homotopy steps (Algorithm 2); with ``adaptive`` the first step is ``1/eta``.
    adaptive : bool
        App. D.5: a step whose flip point is not found within ``inner_iter`` iterations is
        retreated from and halved; a successful step doubles the next one.
    tau : float, optional
        Lower bound on neuron slopes in Algorithm 1 (default 1e-5 for erf networks; for PReLU
        the slope ``alpha^h`` of Algorithm F2, default 0.5).
    schedule : {"linear", "inverse"}
        How the widths move along the path: linearly in ``sigma`` (the paper) or in ``1/sigma``
        (see :func:`fliplib.homotopy.interpolate`).
    margin : float
        Inequality margin: the solver asks ``z_i >= z_k + margin`` for the other classes (logit
        units), eq. 4's strict inequality with room to spare.  Success needs only ``z_i - z_k``
        above the gap tolerance (``min_margin`` reports the smallest difference).
    max_iter : int
        Iterations on the original network (the final homotopy stage, or all of ``"direct"``).
    inner_iter : int
        Iterations per intermediate homotopy step.
    path_tol : float
        Relative logit gap at which an intermediate flip point counts as found.
    gap_tol : float
        Success needs ``|z_i - z_j| <= gap_tol * max(1, |z_i|)`` (100x tighter than the authors' 1e-4).
    xtol : float
        The solver stops (once feasible) when its step is below ``xtol`` times the distance.
        Near a solution the step is about the optimality residual times the distance; the
        Jacobian rows are float32 (:func:`fliplib.jacobian.vjp_float32`), accurate to about
        ``1e-6`` relative, so ``xtol`` much below that only costs iterations.
    opt_tol : float
        Status 0 needs the relative optimality residual below this; above it, status 1.
    n_rows : int, optional
        Constraints linearised per iteration: the target and the ``n_rows - 1`` other classes
        closest to winning.  Default: all ``n_classes - 1`` (exact; fewer is cheaper with many
        classes but can stall where several classes compete).
    fallback : {"auto", "failed", "closer", None}
        With ``method="homotopy"``: ``"failed"`` solves the problems whose path fails again
        directly from ``x`` (App. D.4's "alternative path"); ``"closer"`` does so for every
        problem and keeps the closer answer; ``None`` reports the path's own answer.  ``"auto"``
        is ``"failed"`` on erf networks and ``"closer"`` on PReLU networks.  With a fallback, a
        problem that still fails is approached from the boundary (:func:`fliplib.rescue.boundary_walk`,
        from witnesses of the same call, so such an answer can depend on the other problems).
    restarts : int
        Finally solve every problem this many more times directly, from starts drawn around
        ``x`` (:func:`fliplib.rescue.restart_points`), keeping a flip point only where it is closer.
    seed : int
        Seeds the restarts' starting points (no global state is used).
    batch_size : int
        Problems solved together.
    progress : bool
        Show a progress bar over batches.
    search_rays : int
        Global stage (``search="global"``, :mod:`fliplib.search`): random rays from ``x`` scanned
        for boundary crossings inside the ball, per problem and round.
    search_keep : int
        The nearest crossings, the nearest witness crossings (of the ``2 * search_keep`` nearest
        witnesses) and, where an input has several targets (``"all"`` or an ``(n, r)`` array),
        the nearest flip points of the same input towards its other targets that become starts of F;
        with ``target="any"``, F also runs from the current flip point towards the
        ``search_keep // 2`` nearest classes of the screen.
    search_perturbations : tuple of float
        Starts ``x + rho r u`` inside the ball of radius ``r``, one per ``rho``.
    search_samples : int
        Random points of the ball, per problem and round, classified by one forward pass each;
        the nearest ones of the target class (``search_keep // 2`` of them) become starts.
    search_rounds : int
        Rounds of the search; a round after the first searches only the balls that shrank, and
        the problems still without a flip point.
    any_classes : int
        With ``target="any"``: the classes solved for by the local method, those whose screened
        flip points lie nearest to ``x`` (the global stage then looks for any class).
    any_screen_iter : int
        With ``target="any"``: iterations of the screen, F from ``x`` towards every other class
        with three rows linearised, whose distances rank the classes.
    """

    eta: int = 4
    adaptive: bool = True
    tau: float | None = None
    schedule: str = "linear"
    margin: float = 1e-3
    max_iter: int = 300
    inner_iter: int = 20
    path_tol: float = 1e-4
    gap_tol: float = 1e-6
    xtol: float = 1e-4
    opt_tol: float = 1e-3
    n_rows: int | None = None
    fallback: str | None = "auto"
    restarts: int = 0
    seed: int = 0
    batch_size: int = 4096
    progress: bool = False
    search_rays: int = 32
    search_keep: int = 4
    search_perturbations: tuple = (0.3, 0.6, 0.9)
    search_samples: int = 256
    search_rounds: int = 2
    any_classes: int = 2
    any_screen_iter: int = 15

    def __post_init__(self):
        for name in ("eta", "max_iter", "inner_iter", "batch_size", "search_rays", "search_keep", "search_rounds",
                     "search_samples", "any_classes", "any_screen_iter"):
            positive_int(name, getattr(self, name))
        positive_int("restarts", self.restarts, allow_zero=True)
        positive_int("seed", self.seed, allow_zero=True)
        if self.n_rows is not None:
            positive_int("n_rows", self.n_rows)
        for name in ("adaptive", "progress"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("margin", "path_tol", "gap_tol", "xtol", "opt_tol"):
            positive_number(name, getattr(self, name), allow_inf=name == "opt_tol")
        rhos = np.asarray(self.search_perturbations, dtype=float)
        if rhos.ndim != 1 or not np.all((rhos > 0) & (rhos <= 1)):
            raise ValueError(f"search_perturbations must be numbers in (0, 1], got {self.search_perturbations!r}")
        object.__setattr__(self, "search_perturbations", tuple(float(r) for r in rhos))
        if self.tau is not None:
            positive_number("tau", self.tau)
        if self.schedule not in ("linear", "inverse"):
            raise ValueError(f"schedule must be 'linear' or 'inverse', got {self.schedule!r}")
        if self.fallback not in ("auto", "failed", "closer", None):
            raise ValueError(f"fallback must be 'auto', 'failed', 'closer' or None, got {self.fallback!r}")

    @classmethod
    def from_any(cls, options) -> "FlipOptions":
        """``options`` as a :class:`FlipOptions`: ``None`` (the defaults), a dict or an instance."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if not isinstance(options, dict):
            raise TypeError(f"options must be a FlipOptions, a dict or None, got {type(options).__name__}")
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown options {unknown}; FlipOptions has {[f.name for f in fields(cls)]}")
        return cls(**options)

    def replace(self, **changes) -> "FlipOptions":
        """A copy with ``changes``."""
        return FlipOptions(**{**asdict(self), **changes})
