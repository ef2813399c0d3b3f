"""Smoke and property tests of fliplib.plotting (Agg backend, tiny untrained networks)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

import fliplib  # noqa: E402
from fliplib.baselines import numpy_logits  # noqa: E402
from fliplib.plotting import (  # noqa: E402
    grid_logits,
    plot_data,
    plot_decision_regions,
    plot_flip_segments,
    plot_tie_curve,
    tie_curve,
)

LIM = (-3.0, 3.0)


@pytest.fixture(scope="module")
def three_class():
    return fliplib.network_params(fliplib.erf_network([2, 8, 3], sigma=1.0, seed=3))


@pytest.fixture(scope="module")
def two_class():
    return fliplib.network_params(fliplib.erf_network([2, 8, 2], sigma=1.0, seed=4))


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_grid_logits_match_the_network(three_class) -> None:
    x1, x2, logits = grid_logits(three_class, xlim=LIM, ylim=(-1.0, 2.0), resolution=7)
    assert logits.shape == (7, 7, 3)
    assert x1[0] == -3.0 and x1[-1] == 3.0 and x2[0] == -1.0 and x2[-1] == 2.0
    # Row a follows x2, column b follows x1.
    np.testing.assert_allclose(logits[2, 5], numpy_logits(three_class, [[x1[5], x2[2]]])[0], rtol=1e-10, atol=1e-12)


def test_decision_regions_draws_labels_and_returns_the_winner(three_class, ax) -> None:
    winner = plot_decision_regions(three_class, ax, xlim=LIM, ylim=LIM, resolution=40)
    assert winner.shape == (40, 40)
    assert set(np.unique(winner)) <= {0, 1, 2}
    assert ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_xlim() == LIM and ax.get_ylim() == LIM
    assert len(ax.collections) >= 1  # the region mesh, plus boundary contours when classes meet
    _, _, logits = grid_logits(three_class, xlim=LIM, ylim=LIM, resolution=40)
    np.testing.assert_array_equal(winner, np.argmax(logits, axis=-1))


@pytest.mark.parametrize("kwargs", [dict(xlim=(1, 1), ylim=LIM), dict(xlim=LIM, ylim=(0, np.nan)),
                                    dict(xlim=(0, 1, 2), ylim=LIM), dict(xlim=LIM, ylim=LIM, resolution=1)])
def test_decision_regions_rejects_bad_grids(three_class, ax, kwargs) -> None:
    with pytest.raises(ValueError):
        plot_decision_regions(three_class, ax, **kwargs)


def test_decision_regions_needs_two_features(ax) -> None:
    net = fliplib.erf_network([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="two input features"):
        plot_decision_regions(net, ax, xlim=LIM, ylim=LIM)


def test_plot_data_draws_one_collection_per_class(ax) -> None:
    x = np.random.default_rng(0).normal(size=(30, 2))
    y = np.repeat([0, 2, 3], 10)
    drawn = plot_data(ax, x, y, class_names=["a", "b", "c", "d"])
    assert [c.get_label() for c in drawn] == ["a", "c", "d"]
    assert sum(len(c.get_offsets()) for c in drawn) == 30
    with pytest.raises(ValueError):
        plot_data(ax, x, y[:-1])


def test_flip_segments_join_each_input_to_its_flip_point_and_skip_nan(ax) -> None:
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    x_hat = np.array([[0.5, 0.0], [np.nan, np.nan], [2.0, 3.0]])
    segments = plot_flip_segments(ax, x, x_hat)
    assert isinstance(segments, LineCollection)
    paths = segments.get_segments()
    assert len(paths) == 2
    np.testing.assert_allclose(paths[1], [[2.0, 2.0], [2.0, 3.0]])
    assert segments in ax.collections
    with pytest.raises(ValueError):
        plot_flip_segments(ax, x, x_hat[:2])


def test_tie_curve_lies_on_the_tie_and_flags_eq4(three_class) -> None:
    lines, valid = tie_curve(three_class, 0, 1, xlim=LIM, ylim=LIM, resolution=200)
    assert lines, "the chosen network has a 0-1 tie in the window"
    points, ok = np.concatenate(lines), np.concatenate(valid)
    z = numpy_logits(three_class, points)
    spread = np.ptp(z[:, 0]) + np.ptp(z[:, 1]) + 1.0
    # Linear interpolation on a grid of spacing h leaves an O(h^2) gap.
    assert np.max(np.abs(z[:, 0] - z[:, 1])) < 1e-2 * spread
    np.testing.assert_array_equal(ok, np.maximum(z[:, 0], z[:, 1]) >= z[:, 2])
    assert np.all((points >= LIM[0]) & (points <= LIM[1]))


def test_tie_curve_is_symmetric_and_all_valid_with_two_classes(two_class) -> None:
    ij, ok_ij = tie_curve(two_class, 0, 1, xlim=LIM, ylim=LIM, resolution=80)
    ji, _ = tie_curve(two_class, 1, 0, xlim=LIM, ylim=LIM, resolution=80)
    a, b = np.concatenate(ij), np.concatenate(ji)
    assert len(a) == len(b)
    np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-9)
    assert all(v.all() for v in ok_ij)


def test_tie_curve_rejects_equal_or_unknown_classes(three_class) -> None:
    for i, j in [(1, 1), (0, 3), (-1, 0)]:
        with pytest.raises(ValueError, match="two different classes"):
            tie_curve(three_class, i, j, xlim=LIM, ylim=LIM)


def test_plot_tie_curve_draws_solid_and_dotted_parts(three_class, ax) -> None:
    before = len(ax.collections)
    points, valid = plot_tie_curve(three_class, ax, 0, 1, xlim=LIM, ylim=LIM, resolution=100, label="tie")
    assert len(ax.collections) == before + 2
    assert points.shape == (len(valid), 2)
    solid, dotted = ax.collections[-2:]
    assert solid.get_label() == "tie" and "third class" in dotted.get_label()
    assert 0 < valid.sum() < len(valid), "the chosen network's 0-1 tie is partly a boundary"
    # Each run is one polyline; past its first (shared) vertex, every vertex has the run's verdict.
    lookup = {tuple(p): v for p, v in zip(points, valid)}
    for collection, verdict in [(solid, True), (dotted, False)]:
        runs = collection.get_segments()
        assert runs
        assert all(lookup[tuple(v)] == verdict for run in runs for v in run[1:])
