"""fliplib.baselines: the NumPy reference pass and the per-point yardsticks end on the boundary."""

import warnings

import numpy as np
import pytest

import fliplib
from fliplib.baselines import deepfool_boundary_point, numpy_logit_jacobian, numpy_logits, random_boundary_point
from fliplib.params import forward, network_params


@pytest.fixture(scope="module")
def net():
    return fliplib.erf_network([3, 8, 8, 3], sigma=1.0, seed=4)


def test_numpy_logits_match_tensorflow(net, rng):
    x = rng.normal(size=(10, 3))
    np.testing.assert_allclose(numpy_logits(net, x), forward(network_params(net), x).logits.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(numpy_logits(net, x[0]), numpy_logits(net, x[:1]))


@pytest.mark.parametrize("find", [deepfool_boundary_point, random_boundary_point])
def test_boundary_points_lie_on_the_boundary_of_the_source_class(net, find, rng):
    x = rng.normal(size=3)
    source = int(np.argmax(numpy_logits(net, x)[0]))
    found = find(net, x)
    assert found["success"]
    z = numpy_logits(net, found["x"])[0]
    others = np.delete(z, source)
    assert abs(z[source] - others.max()) <= 1e-9 * max(1.0, abs(z[source]))  # bisected to 60 halvings
    assert found["distance"] == pytest.approx(np.linalg.norm(found["x"] - x))


def test_huge_inputs_leak_no_numpy_warning(net):
    x = np.array([1.0, -2.0, 0.5]) * 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numpy_logits(net, x)
        numpy_logit_jacobian(net, x)
        deepfool_boundary_point(net, x, max_iter=3)


def test_bad_integer_options_are_named(net):
    with pytest.raises(ValueError, match="n_directions must be a positive integer"):
        random_boundary_point(net, np.zeros(3), n_directions=0)
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        deepfool_boundary_point(net, np.zeros(3), max_iter=2.5)
