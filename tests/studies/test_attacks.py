"""fliplib.studies.attacks: Foolbox 3 minimum-norm attacks on fliplib models, checked on a linear model."""

import numpy as np
import pytest

import fliplib

foolbox = pytest.importorskip("foolbox")
from fliplib.studies.attacks import ATTACKS, minimum_norm_attack  # noqa: E402


@pytest.fixture(scope="module")
def linear_case():
    """A model with affine logits (no hidden layer), where the closest boundary point is known."""
    model = fliplib.erf_network([6, 2], seed=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, size=(8, 6)).astype("float32")
    w, b = model.get_layer("logits").get_weights()
    wd = (w[:, 0] - w[:, 1]).astype(float)
    g = x.astype(float) @ wd + float(b[0] - b[1])
    labels = (g < 0).astype(np.int64)  # the predicted class
    exact = np.abs(g) / np.linalg.norm(wd)
    return model, x, labels, exact


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_distance_is_never_below_the_exact_minimum(linear_case, attack):
    model, x, labels, exact = linear_case
    options = {"cw": {"steps": 50, "binary_search_steps": 4}, "ddn": {"steps": 30},
               "fmn": {"steps": 30, "max_stepsize": 0.1}}.get(attack, {})
    result = minimum_norm_attack(model, x, labels, attack=attack, lower=-5.0, upper=5.0, **options)
    assert result.x.shape == x.shape and result.distance.shape == (len(x),)
    assert result.seconds_per_input > 0 and result.attack == attack
    predicted = np.argmax(np.asarray(model(result.x.astype("float32"))), axis=1)
    np.testing.assert_array_equal(result.success, predicted != labels)
    hit = result.success
    # Float32 models: allow a little rounding below the exact distance.
    assert np.all(result.distance[hit] >= exact[hit] * (1 - 1e-3) - 1e-5)
    np.testing.assert_allclose(result.distance[hit], np.linalg.norm(result.x - x, axis=1)[hit], rtol=1e-5)
    assert np.all(np.isinf(result.distance[~hit]))
    assert np.all((result.x >= -5.0) & (result.x <= 5.0))


def test_deepfool_is_exact_on_a_linear_model(linear_case):
    model, x, labels, exact = linear_case
    result = minimum_norm_attack(model, x, labels, attack="deepfool", lower=-5.0, upper=5.0)
    assert result.success.all()
    np.testing.assert_allclose(result.distance, exact, rtol=0.05)  # DeepFool overshoots by 2%


def test_bad_input_is_rejected(linear_case):
    model, x, labels, _ = linear_case
    with pytest.raises(ValueError, match="attack must be one of"):
        minimum_norm_attack(model, x, labels, attack="pgd", lower=-5.0, upper=5.0)
    with pytest.raises(ValueError, match="within the bounds"):
        minimum_norm_attack(model, x, labels, lower=0.5, upper=5.0)
    with pytest.raises(ValueError, match="labels"):
        minimum_norm_attack(model, x, labels[:3], lower=-5.0, upper=5.0)
    with pytest.raises(TypeError, match="bad options"):
        minimum_norm_attack(model, x, labels, attack="ddn", lower=-5.0, upper=5.0, nonsense=1)
