"""Mixed continuous/categorical flip points: exact one-hotness, constraints, and brute force."""

import itertools

import numpy as np
import pytest

import fliplib
from fliplib.mixed import _assignments, mixed_flip_points, one_hot_violation

# 2 continuous features, then two groups of 3 categories.
GROUPS = {"colour": np.array([2, 3, 4]), "shape": np.array([5, 6, 7])}
CATEGORICAL = np.zeros(8, dtype=bool)
CATEGORICAL[2:] = True
LOWER = np.array([-2.0, -2.0] + [0.0] * 6)
UPPER = np.array([2.0, 2.0] + [1.0] * 6)
SOLVER = dict(method="direct", search="local")


@pytest.fixture(scope="module")
def net():
    """A small erf network whose boundary cuts through the box (trained on a rule that mixes both kinds)."""
    rng = np.random.default_rng(0)
    x = random_inputs(rng, 600)
    y = ((x[:, 0] + 0.8 * x[:, 1] - 1.2 * x[:, 3] + 1.0 * x[:, 7] + 0.5 * x[:, 4]) > 0.3).astype(int)
    model = fliplib.erf_network([8, 16, 16, 2], seed=0)
    fliplib.train(model, x, y, epochs=40, batch_size=64, learning_rate=1e-2, seed=0)
    return model


def random_inputs(rng, n):
    x = np.zeros((n, 8))
    x[:, :2] = rng.uniform(-1.5, 1.5, size=(n, 2))
    x[np.arange(n), 2 + rng.integers(0, 3, n)] = 1.0
    x[np.arange(n), 5 + rng.integers(0, 3, n)] = 1.0
    return x


@pytest.fixture(scope="module")
def inputs(net):
    x = random_inputs(np.random.default_rng(1), 6)
    target = 1 - fliplib.predict_proba(net, x).argmax(axis=1)
    return x, target


def brute_force(net, x, target):
    """Every assignment of every input solved with closest_flip_points: (n, 9) squared distances."""
    n = len(x)
    source = 1 - target
    rows, starts = [], []
    for i in range(n):
        for a, b in itertools.product(range(3), range(3)):
            xa = x[i].copy()
            xa[2:] = 0.0
            xa[2 + a] = xa[5 + b] = 1.0
            rows.append(i)
            starts.append(xa)
    rows = np.array(rows)
    res = fliplib.closest_flip_points(net, np.array(starts), target[rows], source=source[rows], lower=LOWER,
                                      upper=UPPER, fixed=CATEGORICAL, **SOLVER)
    d2 = np.where(res.success, np.sum((res.x - x[rows]) ** 2, axis=1), np.inf)
    return d2.reshape(n, 9)


@pytest.fixture(scope="module")
def brute(net, inputs):
    x, target = inputs
    return brute_force(net, x, target)


def test_flip_points_are_exactly_one_hot_feasible_and_on_the_boundary(net, inputs):
    x, target = inputs
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, **SOLVER)
    assert np.all(res.success)
    assert np.all(one_hot_violation(res.x, GROUPS) == 0.0)
    assert np.all(np.isin(res.x[:, CATEGORICAL], (0.0, 1.0)))
    assert np.all((res.x >= LOWER) & (res.x <= UPPER))
    assert np.all(res.flip.bound_violation == 0)
    z = fliplib.baselines.numpy_logits(net, res.x)
    assert np.all(res.flip.logit_gap <= 1e-6 * np.maximum(1.0, np.abs(z).max()))
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=1e-5)
    np.testing.assert_allclose(res.distance, np.linalg.norm(res.x - x, axis=1))
    # The categorical cost is 2 per changed group, and the assignment is what the point holds.
    changed = res.changed_groups().to_numpy()
    np.testing.assert_array_equal(res.categorical_cost, 2.0 * changed.sum(axis=1))
    for g, idx in enumerate(GROUPS.values()):
        np.testing.assert_array_equal(np.argmax(res.x[:, idx], axis=1), res.assignment[:, g])
    assert np.all(res.flip.optimality < 1e-3)


def test_search_finds_the_best_assignment_of_brute_force(net, inputs, brute):
    x, target = inputs
    d2 = brute
    assert np.all(np.isfinite(d2.min(axis=1)))
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, beam_width=3,
                            max_assignments=9, move_tol=None, **SOLVER)
    assert np.all(res.exhaustive)
    np.testing.assert_allclose(res.distance**2, d2.min(axis=1), rtol=1e-6, atol=1e-9)
    # Pruning is exact: every skipped assignment costs at least the best squared distance.
    assert np.all(res.n_solved <= res.n_candidates)


def test_a_narrower_beam_never_beats_brute_force(net, inputs, brute):
    x, target = inputs
    d2 = brute
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, beam_width=1, **SOLVER)
    ok = res.success
    assert np.all(res.distance[ok] ** 2 >= d2.min(axis=1)[ok] - 1e-9)
    # beam_width=1 tries only the current categories: nothing changes.
    assert not res.changed_groups().to_numpy()[ok].any()


def test_fixed_features_and_fixed_groups_never_move(net, inputs):
    x, target = inputs
    fixed = np.zeros(8, dtype=bool)
    fixed[0] = True  # a continuous feature
    fixed[4] = True  # category 2 of "colour": ruled out where inactive, kept where active
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, fixed=fixed,
                            fixed_groups=["shape"], **SOLVER)
    ok = res.success
    assert ok.any()
    np.testing.assert_array_equal(res.x[:, 0], x[:, 0])
    np.testing.assert_array_equal(res.x[:, 4], x[:, 4])
    np.testing.assert_array_equal(res.x[:, 5:], x[:, 5:])
    assert np.all(one_hot_violation(res.x, GROUPS) == 0.0)


def test_forced_groups_change(net, inputs, brute):
    x, target = inputs
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, change_groups=["colour"],
                            fixed_groups=("shape",), **SOLVER)
    changed = res.changed_groups()
    assert changed["colour"].all() and not changed["shape"].any()
    assert np.all(res.categorical_cost == 2.0)
    assert np.all(one_hot_violation(res.x, GROUPS) == 0.0)
    # It agrees with brute force over the assignments that change colour and keep shape.
    d2 = brute.reshape(-1, 3, 3)
    current = res.initial_assignment
    rows = np.arange(len(x))
    allowed = np.stack([d2[rows, a, current[:, 1]] for a in range(3)], axis=1)
    allowed[rows, current[:, 0]] = np.inf
    ok = res.success
    np.testing.assert_allclose(res.distance[ok] ** 2, allowed.min(axis=1)[ok], rtol=1e-6, atol=1e-9)


def test_feature_weights_price_categorical_changes(net, inputs):
    x, target = inputs
    w = np.array([1.0, 2.0, 0.5, 3.0, 1.0, 1.0, 1.0, 4.0])
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, feature_weights=w, **SOLVER)
    np.testing.assert_allclose(res.distance, np.sqrt(np.sum(w * (res.x - x) ** 2, axis=1)))
    diff = (res.x - x)[:, CATEGORICAL]
    np.testing.assert_allclose(res.categorical_cost, np.sum(w[CATEGORICAL] * diff**2, axis=1))


def test_assignments_come_by_number_of_changes_and_respect_forced_groups():
    options = [[0, 1, 2], [1, 0], [2]]
    found = _assignments(options, np.array([0, 1, 2]), max_assignments=100)
    changes = [sum(a != c for a, c in zip(assignment, (0, 1, 2))) for assignment in found]
    assert changes == sorted(changes) and found[0] == (0, 1, 2)
    assert len(found) == len(set(found)) == 3 * 2
    forced = _assignments([[1, 2], [0, 1]], np.array([0, 0]), max_assignments=100)
    assert all(a[0] != 0 for a in forced) and len(forced) == 4
    assert len(_assignments(options, np.array([0, 1, 2]), max_assignments=4)) == 4


def test_one_hot_violation():
    groups = {"a": [0, 1, 2], "b": [3, 4]}
    assert np.array_equal(one_hot_violation(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 1.0]]), groups), [0, 0])
    bad = one_hot_violation(np.array([[0, 1, 1, 1, 0], [0.9, 0.1, 0, 1, 0], [0, 0, 0, 1, 0]]), groups)
    np.testing.assert_allclose(bad, [1.0, 0.1, 1.0])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(groups={}), TypeError),
        (dict(groups={"a": [0, 1], "b": [1, 2]}), ValueError),
        (dict(groups=GROUPS, fixed_groups=["size"]), ValueError),
        (dict(groups=GROUPS, fixed_groups=["shape"], change_groups=["shape"]), ValueError),
        (dict(groups=GROUPS, beam_width=0), ValueError),
        (dict(groups=GROUPS, lower=np.zeros(3)), ValueError),
        (dict(groups=GROUPS, change_groups=["colour"], fixed=np.array([0, 0, 1, 1, 1, 0, 0, 0], bool)), ValueError),
    ],
)
def test_bad_options_raise(net, inputs, kwargs, error):
    x, target = inputs
    options = dict(lower=LOWER, upper=UPPER) | kwargs
    with pytest.raises(error):
        mixed_flip_points(net, x, target, **options)


def test_inputs_must_be_one_hot(net, inputs):
    x, target = inputs
    bad = x.copy()
    bad[0, 2:5] = [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="input 0 is not exactly one-hot"):
        mixed_flip_points(net, bad, target, groups=GROUPS, lower=LOWER, upper=UPPER)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(lower="a"), TypeError, "^lower must hold real numbers"),
        (dict(upper=[2.0, "b"] + [1.0] * 6), TypeError, "^upper must hold real numbers"),
        (dict(x="ragged"), ValueError, "^x must be a rectangular array of numbers"),
        (dict(x="strings"), TypeError, "^x must hold real numbers"),
        (dict(x="outside"), ValueError, r"^input 1 lies outside its bounds at feature 0: 2.5 not in \[-2.0, 2.0\]"),
        (dict(feature_weights=[1.0] * 7 + [0.0]), ValueError, "^feature_weights must be 8 positive finite numbers"),
        (dict(fixed=np.ones(8)), TypeError, "^fixed must be a boolean mask"),
        (dict(max_solved=0), ValueError, "^max_solved must be a positive integer"),
    ],
)
def test_bad_input_is_refused_up_front_naming_the_argument(net, inputs, change, error, match):
    x, target = inputs
    kind = change.pop("x", None)
    if kind == "ragged":
        x = [list(x[0]), list(x[1][:-1])]
        target = target[:2]
    elif kind == "strings":
        x = x.astype(str)
    elif kind == "outside":  # a continuous feature beyond its bound: once clipped silently
        x = x.copy()
        x[1, 0] = 2.5
    options = dict(lower=LOWER, upper=UPPER) | change
    with pytest.raises(error, match=match):
        mixed_flip_points(net, x, target, groups=GROUPS, **options)


def test_the_callers_witnesses_reach_every_continuous_solve(net, inputs, monkeypatch):
    x, target = inputs
    seen, real = [], fliplib.mixed.closest_flip_points

    def spy(*args, **kwargs):
        seen.append(kwargs.get("witnesses"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fliplib.mixed, "closest_flip_points", spy)
    extra = random_inputs(np.random.default_rng(5), 30)
    res = mixed_flip_points(net, x, target, groups=GROUPS, lower=LOWER, upper=UPPER, witnesses=extra,
                            options=dict(search_rays=4, search_samples=8, search_rounds=1))
    assert res.success.any() and len(seen) >= 2
    assert all(w is extra for w in seen)
