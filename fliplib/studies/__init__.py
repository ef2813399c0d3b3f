"""Chapter studies: the code one chapter of the book alone needs.

A *study module* serves one chapter: it measures a claim of the papers on that chapter's data
(for example which training points influence a network, or how flip points look as pixels),
on top of the core API.  The core (:mod:`fliplib.model`, :mod:`fliplib.params`,
:mod:`fliplib.jacobian`, :mod:`fliplib.homotopy`, :mod:`fliplib.flip`) and the capability
modules (:mod:`fliplib.mixed`, :mod:`fliplib.boundary`, ...) never import a study module, so
the arrows point one way: studies -> library.

- :mod:`fliplib.studies.experiments` (chapter 2): the homotopy path and solvers side by side;
- :mod:`fliplib.studies.influence` (chapter 3): alternate labels, influential training points,
  synthetic data;
- :mod:`fliplib.studies.images` (chapter 4): flip points of image classifiers in pixel space;
- :mod:`fliplib.studies.attacks` (chapter 7): Foolbox's minimum-norm attacks, for comparison.

Import them explicitly, e.g. ``from fliplib.studies.influence import distance_subsets``.
"""
