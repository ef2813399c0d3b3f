"""Tests of fliplib.studies.experiments: the homotopy path and the solver comparison."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fliplib
from fliplib.baselines import numpy_logits
from fliplib.studies.experiments import (
    compare_methods,
    homotopy_network,
    homotopy_path,
    is_flip_point,
    neuron_slopes,
    runner_up_classes,
)


@pytest.fixture(scope="module")
def point(small_erf, rng):
    x = rng.normal(size=(1, 6))
    source, target = runner_up_classes(small_erf, x)
    return x[0], int(source[0]), int(target[0])


def test_homotopy_network_at_zero_makes_x_a_flip_point(small_erf, point):
    x, source, target = point
    net = homotopy_network(small_erf, x, source, target, 0.0, tau=1e-5, margin=1e-2)
    z = numpy_logits(net, x[None])[0]
    others = np.delete(z, [source, target])
    assert abs(z[source] - z[target]) <= 1e-10 * max(1.0, abs(z[source]))
    assert np.all(z[source] - others >= 1e-2 - 1e-10)
    # Algorithm 1: every width lies between 2/sqrt(pi) and 2/(tau sqrt(pi)).
    assert all(2 / np.sqrt(np.pi) - 1e-12 <= s <= 2 / (1e-5 * np.sqrt(np.pi)) for s in net.scales)


def test_homotopy_network_at_one_is_the_original(small_erf, point):
    x, source, target = point
    net = homotopy_network(small_erf, x, source, target, 1.0)
    original = fliplib.network_params(small_erf)
    assert net.scales == original.scales
    np.testing.assert_array_equal(net.biases[-1].numpy(), original.biases[-1].numpy())
    np.testing.assert_array_equal(numpy_logits(net, x[None]), numpy_logits(original, x[None]))


def test_homotopy_network_moves_widths_linearly(small_erf, point):
    x, source, target = point
    ends = [np.array(homotopy_network(small_erf, x, source, target, t).scales) for t in (0.0, 0.25, 1.0)]
    np.testing.assert_allclose(ends[1], 0.75 * ends[0] + 0.25 * ends[2], rtol=1e-12)


def test_homotopy_network_refuses_per_neuron_widths(small_erf):
    # A large tau and a large input send Algorithm 1 to its per-neuron branch (lines 5-10).
    with pytest.raises(ValueError, match="per-neuron"):
        homotopy_network(small_erf, np.full(6, 50.0), 0, 1, 0.5, tau=1.0)


def test_homotopy_network_checks_its_inputs(small_erf, point):
    x, source, target = point
    with pytest.raises(ValueError, match="both class"):
        homotopy_network(small_erf, x, source, source, 0.5)
    with pytest.raises(ValueError, match="t must lie"):
        homotopy_network(small_erf, x, source, target, 1.5)
    with pytest.raises(ValueError, match="shape"):
        homotopy_network(small_erf, np.zeros(5), source, target, 0.5)
    with pytest.raises(ValueError, match="not in"):
        homotopy_network(small_erf, x, source, 7, 0.5)


def test_prelu_homotopy_network_starts_at_a_flip_point():
    model = fliplib.prelu_network([4, 8, 8, 3], alpha=0.0, seed=1)
    x = np.array([0.3, -1.0, 0.5, 2.0])
    source, target = (int(c[0]) for c in runner_up_classes(model, x[None]))
    z = numpy_logits(homotopy_network(model, x, source, target, 0.0, tau=0.5), x[None])[0]
    assert abs(z[source] - z[target]) <= 1e-10 * max(1.0, abs(z[source]))
    np.testing.assert_array_equal(
        numpy_logits(homotopy_network(model, x, source, target, 1.0, tau=0.5), x[None]), numpy_logits(model, x[None])
    )


def test_homotopy_path_ends_where_the_solver_ends(small_erf, point):
    x, source, target = point
    path = homotopy_path(small_erf, x, source, target, eta=3, max_iter=60, inner_iter=10)
    assert path.x.shape == (4, 6) and path.scales.shape == (4, 3) and path.output_bias.shape == (4, 4)
    np.testing.assert_array_equal(path.x[0], x)
    np.testing.assert_allclose(path.t, [0, 1 / 3, 2 / 3, 1])
    assert path.distance[0] == 0 and path.success[0]
    np.testing.assert_allclose(path.distance, np.linalg.norm(path.x - x, axis=1))
    solver = fliplib.closest_flip_points(small_erf, x[None], target, source=source, method="homotopy", search="local",
                                         options=dict(adaptive=False, eta=3, max_iter=60, inner_iter=10, fallback=None))
    np.testing.assert_allclose(path.x[-1], solver.x[0], rtol=1e-9, atol=1e-12)
    assert path.success[-1] == solver.success[0]
    # One solve, not eta: the path's work is the solver's, accumulated stage by stage.
    assert path.n_jacobian_evals[-1] == solver.n_jacobian_evals[0]
    assert np.all(np.diff(path.n_jacobian_evals) > 0)
    frame = path.to_frame()
    assert list(frame.index) == [0, 1, 2, 3]
    z = numpy_logits(small_erf, path.x)
    np.testing.assert_allclose(frame["logit gap of N"], np.abs(z[:, source] - z[:, target]))


def test_homotopy_path_checks_eta(small_erf, point):
    x, source, target = point
    with pytest.raises(ValueError, match="eta"):
        homotopy_path(small_erf, x, source, target, eta=0)


def test_neuron_slopes_after_algorithm_1_lie_between_tau_and_one(small_erf, rng):
    from fliplib import homotopy

    x = 3.0 * rng.normal(size=(20, 6))
    params = fliplib.network_params(small_erf)
    before = neuron_slopes(small_erf, x)
    assert list(before.index) == [1, 2, 3]
    sigma = np.array(params.scales)
    assert np.all(before["largest slope"] <= 2 / (sigma * np.sqrt(np.pi)) + 1e-12)
    np.testing.assert_allclose(before["largest erf'(u)"], before["largest slope"] * sigma)
    tau = 1e-4
    after = neuron_slopes(small_erf, x, scales=homotopy.transform_erf(params, x, tau))
    assert np.all(after["smallest erf'(u)"] >= tau * (1 - 1e-9))
    assert np.all(after["largest erf'(u)"] <= 2 / np.sqrt(np.pi) + 1e-12)
    assert np.all(after["largest slope"] <= 1 + 1e-12)


def test_neuron_slopes_of_a_relu_network_are_zero_or_one(rng):
    model = fliplib.prelu_network([4, 8, 8, 3], alpha=0.0, seed=1)
    slopes = neuron_slopes(model, rng.normal(size=(30, 4)))
    assert list(slopes.columns) == ["smallest slope", "largest slope"]
    assert set(slopes.to_numpy().ravel()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="shape"):
        neuron_slopes(model, np.zeros((2, 5)))


def test_runner_up_classes_are_the_two_largest_logits(small_erf, rng):
    x = rng.normal(size=(50, 6))
    source, target = runner_up_classes(small_erf, x)
    z = numpy_logits(small_erf, x)
    rows = np.arange(50)
    assert np.all(source != target)
    np.testing.assert_array_equal(source, np.argmax(z, axis=1))
    masked = z.copy()
    masked[rows, source] = -np.inf
    np.testing.assert_array_equal(target, np.argmax(masked, axis=1))


@settings(max_examples=50, deadline=None)
@given(gap=st.floats(0, 1), margin=st.floats(-1, 1), violation=st.floats(0, 1), z=st.floats(0, 100),
       finite=st.booleans())
def test_is_flip_point_needs_every_condition(gap, margin, violation, z, finite):
    ev = {"logit_gap": [gap], "min_margin": [margin], "bound_violation": [violation], "z_source": [z],
          "finite": [finite]}
    tol = 1e-6 * max(1.0, z)
    expected = finite and gap <= tol and margin > tol and violation <= 0
    assert is_flip_point(ev)[0] == expected


def test_compare_methods_tabulates_every_solver(small_erf, rng):
    x = rng.normal(size=(4, 6))
    source, target = runner_up_classes(small_erf, x)
    methods = {"direct": {"method": "direct", "max_iter": 30}, "eta = 2": {"adaptive": False, "eta": 2, "max_iter": 30}}
    table, problems = compare_methods(small_erf, x, target, source=source, methods=methods, n_slsqp=1)
    assert list(table.index) == ["direct", "eta = 2", "SLSQP"]
    assert list(table["problems"]) == [4, 4, 1]
    assert table["success rate"].between(0, 1).all() and table["best found"].between(0, 1).all()
    assert (table["median ratio to best"].dropna() >= 1 - 1e-12).all()
    assert (table["seconds per problem"] > 0).all()
    # The problems frame agrees with the solver's own answer.
    direct = fliplib.closest_flip_points(small_erf, x, target, source=source, method="direct", search="local",
                                         options=dict(max_iter=30))
    mine = problems[problems["method"] == "direct"]
    np.testing.assert_array_equal(mine["success"], direct.success)
    np.testing.assert_allclose(mine["distance"], direct.distance)
    # Every problem that some solver solved counts as "best found" for at least one solver.
    solved = problems[problems["success"]]["problem"].nunique()
    best_counts = (table["best found"] * table["problems"]).round().sum()
    assert best_counts >= solved


def test_compare_methods_checks_its_inputs(small_erf, rng):
    x = rng.normal(size=(3, 6))
    with pytest.raises(ValueError, match="shape"):
        compare_methods(small_erf, x, [1, 2], methods={"direct": {"method": "direct"}})
    with pytest.raises(ValueError, match="at least one"):
        compare_methods(small_erf, x, [1, 2, 3], methods={})
    source = fliplib.predict_proba(small_erf, x).argmax(axis=1)
    with pytest.raises(ValueError, match="i == j"):  # checked before SLSQP runs, not judged a success
        compare_methods(small_erf, x, source, methods={}, n_slsqp=3)
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        compare_methods(small_erf, x, [7, 7, 7], methods={}, n_slsqp=3)
    with pytest.raises(ValueError, match="'SLSQP'"):
        compare_methods(small_erf, x, (source + 1) % 4, methods={"SLSQP": {}}, n_slsqp=1)


def test_compare_methods_takes_bounds_per_input(small_erf, rng):
    x = rng.normal(size=(3, 6))
    target = (fliplib.predict_proba(small_erf, x).argmax(axis=1) + 1) % 4
    lower, upper = x - 2.0, x + 2.0
    table, problems = compare_methods(small_erf, x, target, methods={"direct": {"method": "direct"}},
                                      lower=lower, upper=upper, n_slsqp=2)
    assert list(table.index) == ["direct", "SLSQP"] and table.loc["SLSQP", "problems"] == 2
    direct = fliplib.closest_flip_points(small_erf, x, target, method="direct", search="local", lower=lower, upper=upper)
    np.testing.assert_array_equal(problems.query("method == 'direct'")["success"], direct.success)
