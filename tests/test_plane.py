"""The exhaustive reference in the plane (fliplib.plane): properties of the reference itself."""

import numpy as np
import pytest

import fliplib
from fliplib.baselines import numpy_logits
from fliplib.plane import exhaustive_flip_points, kkt_residual, plane_problems, trace_boundaries


def _set_weights(model, kernels, biases):
    dense = [layer for layer in model.layers if hasattr(layer, "kernel")]
    for layer, w, b in zip(dense, kernels, biases):
        layer.kernel.assign(np.asarray(w, dtype="float32"))
        layer.bias.assign(np.asarray(b, dtype="float32"))
    return model


@pytest.fixture(scope="module")
def affine():
    """A ReLU network that is affine on the box [-1, 1]^2: its two hidden units are x1 + 10 and
    x2 + 10 (always active), and its logits are z0 = 0, z1 = x1 + x2 - 0.5, z2 = -2 x1 - 1.5."""
    model = fliplib.prelu_network([2, 2, 3], alpha=0.0, seed=0)
    return _set_weights(model, [np.eye(2), [[0.0, 1.0, -2.0], [0.0, 1.0, 0.0]]],
                        [[10.0, 10.0], [0.0, -20.5, 18.5]])


def _projection(x, a, c):
    """Orthogonal projection of ``x`` onto the line ``a . v + c = 0``."""
    return x - (a @ x + c) / (a @ a) * a


def test_affine_network_gives_the_analytic_projection(affine):
    x = np.array([-0.2, -0.1])
    assert np.allclose(numpy_logits(affine, x)[0], [0.0, x.sum() - 0.5, -2 * x[0] - 1.5])
    expected = {1: _projection(x, np.array([1.0, 1.0]), -0.5), 2: _projection(x, np.array([-2.0, 0.0]), -1.5)}
    for target, point in expected.items():
        ref = exhaustive_flip_points(affine, x, target=target, lower=-1, upper=1, resolution=64)
        assert ref.exists and ref.source == 0 and ref.target == target
        assert len(ref.distances) == 1  # a straight boundary has one local minimum
        np.testing.assert_allclose(ref.point, point, atol=1e-9)
        assert ref.distance == pytest.approx(np.linalg.norm(point - x), rel=1e-9)
    nearest = exhaustive_flip_points(affine, x, target="any", lower=-1, upper=1, resolution=64)
    assert nearest.target == 2  # 0.55 away, against 0.8 / sqrt(2) = 0.566 for class 1
    assert nearest.distance == pytest.approx(0.55, rel=1e-9)
    assert sorted(nearest.targets.tolist()) == [1, 2]


def test_the_box_cuts_the_boundary(affine):
    # From x = (0.9, -0.9) the projection onto z0 = z1 is (1.15, -0.65), outside the box: the
    # closest flip point in the box is the boundary's end on the edge x1 = 1, (1, -0.5).
    x = np.array([0.9, -0.9])
    ref = exhaustive_flip_points(affine, x, target=1, lower=-1, upper=1, resolution=64)
    np.testing.assert_allclose(ref.point, [1.0, -0.5], atol=1e-9)
    assert kkt_residual(affine, x, ref.point, 0, 1, lower=-1, upper=1) < 1e-8
    assert kkt_residual(affine, x, ref.point, 0, 1) > 0.1  # the bound's multiplier is needed
    free = exhaustive_flip_points(affine, x, target=1, lower=-1, upper=1, bounded=False, resolution=64)
    assert not free.certified  # the unbounded answer (1.15, -0.65) lies outside the window


def test_nearly_linear_erf_network_gives_the_projection():
    # With sigma = 1000, erf(a / sigma) is linear to a relative 1e-7 on the box.
    model = fliplib.erf_network([2, 8, 3], sigma=1000.0, seed=4)
    params = fliplib.network_params(model)
    w1, w2 = (w.numpy() for w in params.weights)
    b1, b2 = (b.numpy() for b in params.biases)
    slope = 2 / np.sqrt(np.pi) / 1000.0
    a_eff, c_eff = slope * w1 @ w2, slope * b1 @ w2 + b2
    rng = np.random.default_rng(0)
    checked = 0
    for x in rng.uniform(-1, 1, size=(6, 2)):
        i = int(np.argmax(x @ a_eff + c_eff))
        for j in range(3):
            if j == i:
                continue
            point = _projection(x, a_eff[:, i] - a_eff[:, j], c_eff[i] - c_eff[j])
            z = point @ a_eff + c_eff
            if np.any(np.abs(point) > 1) or np.delete(z, [i, j]).max() > z[i]:
                continue  # the projection is not a flip point in the box
            ref = exhaustive_flip_points(model, x, target=j, lower=-1, upper=1, resolution=64)
            np.testing.assert_allclose(ref.point, point, atol=1e-5)
            checked += 1
    assert checked >= 3


@pytest.fixture(scope="module")
def random_references():
    """Exhaustive references on two random erf networks and one ReLU network (small grids)."""
    problems = plane_problems("erf", n_inputs=3, networks=[([2, 12, 12, 3], 2.0, True), ([2, 16, 16, 16, 4], 0.3, False)])
    problems += plane_problems("prelu", n_inputs=3, networks=[([2, 16, 16, 16, 4], 1.0, True)])
    out = []
    for problem in problems:
        lo, hi = problem.window
        boundaries = trace_boundaries(problem.model, lo, hi, resolution=128, refine=8)
        for x in problem.x:
            ref = exhaustive_flip_points(problem.model, x, target="any", lower=lo, upper=hi,
                                         bounded=problem.bounded, boundaries=boundaries)
            out.append((problem, ref))
    return out


def test_every_local_minimum_is_a_kkt_point(random_references):
    n_minima = 0
    for problem, ref in random_references:
        lo, hi = ref.lower, ref.upper
        assert ref.exists
        assert np.all(np.diff(ref.distances) >= 0)
        assert ref.distance == ref.distances[0] and np.array_equal(ref.point, ref.points[0])
        for point, target in zip(ref.points, ref.targets):
            z = numpy_logits(problem.model, point)[0]
            i, j = ref.source, int(target)
            scale = max(1.0, abs(z[i]))
            assert abs(z[i] - z[j]) <= 1e-8 * scale
            assert np.all(z[i] - np.delete(z, [i, j]) >= -1e-8 * scale)
            if problem.bounded:
                assert np.all(point >= lo) and np.all(point <= hi)
            bounds = dict(lower=lo, upper=hi) if problem.bounded else {}
            residual = kkt_residual(problem.model, ref.x, point, i, j, **bounds)
            if problem.kind == "erf":
                assert residual < 1e-4
                n_minima += 1
            else:  # at a kink of a ReLU network the gradients do not decide; the flag says which
                assert ref.stationary[np.flatnonzero(np.all(ref.points == point, axis=1))[0]] == (residual <= 1e-4)
        if problem.kind == "erf":
            assert ref.stationary.all()
    n_erf = sum(problem.kind == "erf" for problem, _ in random_references)
    assert n_minima > n_erf  # several local minima per input


def test_polishing_does_not_move_far_from_the_grid(random_references):
    # The grid's nearest polyline point is within two fine cells of the polished minimum.
    for _, ref in random_references:
        assert abs(ref.grid_distance - ref.distance) <= 2 * np.linalg.norm(ref.spacing)


def test_any_is_the_nearest_over_the_targets(random_references):
    problem, ref = random_references[0]
    lo, hi = problem.window
    boundaries = trace_boundaries(problem.model, lo, hi, resolution=128, refine=8)
    singles = [exhaustive_flip_points(problem.model, ref.x, target=j, lower=lo, upper=hi, boundaries=boundaries)
               for j in range(3) if j != ref.source]
    assert ref.distance == pytest.approx(min(s.distance for s in singles), rel=1e-9)


def _island_network(centre, radius_gap, sigma=0.1, half=0.1):
    """An erf network whose class 2 holds only a small island around ``centre``: z0 = 0,
    z1 = -10, z2 = b(x1 - c1) + b(x2 - c2) - (2 max b - radius_gap) with the bump
    b(t) = erf((t + half) / sigma) - erf((t - half) / sigma)."""
    model = fliplib.erf_network([2, 4, 3], sigma=sigma, seed=0)
    c1, c2 = centre
    kernel1 = [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    bias1 = [-c1 + half, -c1 - half, -c2 + half, -c2 - half]
    peak = 2 * float(__import__("scipy.special", fromlist=["erf"]).erf(half / sigma))
    kernel2 = [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
    bias2 = [0.0, -10.0, -(2 * peak - radius_gap)]
    return _set_weights(model, [kernel1, kernel2], [bias1, bias2])


def test_a_tiny_island_is_found():
    # Box [-1, 1]^2 and a coarse grid of 64 cells (width 0.031): the island of class 2, about
    # 0.02 across, sits at the centre of a coarse cell, so no coarse node lies in it.
    cell = 2 / 64
    centre = np.array([-1 + 40.5 * cell, -1 + 29.5 * cell])
    model = _island_network(centre, radius_gap=8e-3)
    x = np.array([0.5, 0.5])
    ref = exhaustive_flip_points(model, x, target=2, lower=-1, upper=1, resolution=64, refine=8)
    assert ref.exists
    z = numpy_logits(model, ref.point)[0]
    assert abs(z[0] - z[2]) <= 1e-8
    radius = np.linalg.norm(ref.point - centre)
    assert 0.005 < radius < 0.015
    assert ref.distance == pytest.approx(np.linalg.norm(x - centre) - radius, rel=1e-6)
    # Without refinement the coarse grid alone does not see the island.
    coarse = exhaustive_flip_points(model, x, target=2, lower=-1, upper=1, resolution=64, refine=1)
    assert not coarse.exists


def test_bad_arguments_are_named(affine):
    with pytest.raises(ValueError, match="target must differ"):
        exhaustive_flip_points(affine, [0.0, 0.0], target=0, lower=-1, upper=1)
    with pytest.raises(ValueError, match="target must be a class or 'any'"):
        exhaustive_flip_points(affine, [0.0, 0.0], target="all", lower=-1, upper=1)
    with pytest.raises(ValueError, match="outside the box"):
        exhaustive_flip_points(affine, [2.0, 0.0], target=1, lower=-1, upper=1)
    with pytest.raises(ValueError, match="upper must exceed lower"):
        trace_boundaries(affine, 1, -1)
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        trace_boundaries(affine, -1, 1, resolution=0)
    with pytest.raises(ValueError, match="2 inputs"):
        trace_boundaries(fliplib.erf_network([3, 4, 2], seed=0), -1, 1)
