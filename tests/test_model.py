import keras
import numpy as np
import pytest

import fliplib
from fliplib.model import Erf, ScalarPReLU
from fliplib.params import network_params


def test_erf_network_structure_and_logits():
    model = fliplib.erf_network([5, 7, 3, 2], sigma=0.5, seed=1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Dense", "Erf", "Dense", "Erf", "Dense"]
    erfs = [layer for layer in model.layers if isinstance(layer, Erf)]
    assert all(float(layer.sigma.numpy()) == 0.5 and layer.sigma.trainable for layer in erfs)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    # Recompute eqs. 8-9 by hand.
    y = x
    for layer in model.layers[1:]:
        if isinstance(layer, keras.layers.Dense):
            y = y @ layer.kernel.numpy() + layer.bias.numpy()
        else:
            from scipy.special import erf

            y = erf(y / 0.5)
    np.testing.assert_allclose(model(x).numpy(), y, rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_and_different_seed_differs():
    a = fliplib.erf_network([4, 8, 3], seed=3).get_weights()
    b = fliplib.erf_network([4, 8, 3], seed=3).get_weights()
    c = fliplib.erf_network([4, 8, 3], seed=4).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


@pytest.mark.parametrize("sizes", [[3], [3, 1], [3, 0, 2], [3, 2.5, 2], [True, 8, 3]])
def test_bad_layer_sizes(sizes):
    with pytest.raises(ValueError, match="layer_sizes|classes"):
        fliplib.erf_network(sizes)


def test_architectures_match_the_papers():
    arch = fliplib.ARCHITECTURES
    assert arch["mnist"][0] == 100 and arch["mnist"][-1] == 10 and len(arch["mnist"]) == 14
    assert arch["cifar10"][:2] == [2500, 1000] and arch["cifar10"][-1] == 2
    assert arch["adult"][0] == 107 and arch["wbcd"][0] == 30
    assert all(len(v) == 14 for v in arch.values())  # 12 hidden layers everywhere


def test_train_learns_a_separable_problem_and_is_reproducible():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    weights = []
    for _ in range(2):
        model = fliplib.erf_network([2, 8, 2], seed=0)
        fliplib.train(model, x, y, epochs=15, batch_size=32, seed=7)
        weights.append(model.get_weights())
    acc = np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y)
    assert acc > 0.95
    assert all(np.allclose(u, v) for u, v in zip(*weights))
    proba = fliplib.predict_proba(model, x[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_train_rejects_bad_labels():
    model = fliplib.erf_network([2, 4, 3], seed=0)
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="class labels"):
        fliplib.train(model, x, np.array([0, 1, 2, 3, 0]), epochs=1)
    with pytest.raises(ValueError, match="shape"):
        fliplib.train(model, np.zeros((5, 3)), np.zeros(5), epochs=1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": np.full((5, 2), np.nan)}, ValueError, "NaN or inf"),
        ({"x": np.full((5, 2), 1e39)}, ValueError, "too large for float32"),
        ({"y": np.array([0, 1, 2, np.nan, 0])}, ValueError, "class labels"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"batch_size": 2.5}, ValueError, "batch_size must be a positive integer"),
        ({"learning_rate": np.nan}, ValueError, "learning_rate must be a positive finite number"),
        ({"validation_data": np.zeros((5, 2))}, ValueError, "a pair"),
        ({"validation_data": (np.zeros((5, 2)), np.full(5, 7))}, ValueError, "validation_data: y must hold"),
    ],
)
def test_train_rejects_bad_input_before_touching_the_weights(kwargs, error, match):
    model = fliplib.erf_network([2, 4, 3], seed=0)
    before = model.get_weights()
    args = {"x": np.zeros((5, 2)), "y": np.array([0, 1, 2, 1, 0]), "epochs": 1} | kwargs
    with pytest.raises(error, match=match):
        fliplib.train(model, **args)
    assert all(np.array_equal(u, v) for u, v in zip(before, model.get_weights()))


def test_predict_proba_checks_its_input():
    model = fliplib.erf_network([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        fliplib.predict_proba(model, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        fliplib.predict_proba(model, np.zeros((3, 3)))
    with pytest.raises(TypeError, match="keras.Model"):
        fliplib.predict_proba(network_params(model), np.zeros((3, 2)))
    assert fliplib.predict_proba(model, np.zeros((0, 2))).shape == (0, 3)
    one = fliplib.predict_proba(model, np.array([0.3, -0.2]))
    np.testing.assert_allclose(one, fliplib.predict_proba(model, np.array([[0.3, -0.2]])))


def test_save_and_load_roundtrip(tmp_path):
    model = fliplib.erf_network([3, 5, 2], sigma=0.7, seed=2)
    path = tmp_path / "net.keras"
    model.save(path)
    loaded = fliplib.load_model(path)
    x = np.random.default_rng(1).normal(size=(3, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert network_params(loaded).scales == pytest.approx(network_params(model).scales)


def test_prelu_network_activation():
    model = fliplib.prelu_network([2, 3, 2], alpha=0.1, seed=0)
    layer = [lay for lay in model.layers if isinstance(lay, ScalarPReLU)][0]
    out = layer(np.array([[-2.0, 0.0, 3.0]], dtype="float32")).numpy()
    np.testing.assert_allclose(out, [[-0.2, 0.0, 3.0]])
    with pytest.raises(ValueError, match="alpha"):
        ScalarPReLU(alpha=1.5)


def test_network_params_rejects_other_models():
    relu_dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="built-in activation"):
        network_params(relu_dense)
    conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 2), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="not an erf or PReLU network"):
        network_params(conv)
    linear = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="no hidden"):
        network_params(linear)
    with pytest.raises(TypeError, match="keras.Model"):
        network_params("not a model")
    # Dense acts on the last axis: a (2, 2) input would pass every layer check.
    inp = keras.Input((2, 2))
    matrices = keras.Model(inp, keras.layers.Dense(3)(fliplib.model.Erf(1.0)(keras.layers.Dense(8)(inp))))
    with pytest.raises(TypeError, match=r"vectors of logits.*\(None, 2, 2\)"):
        network_params(matrices)
    unbuilt = keras.Sequential([keras.layers.Dense(8), fliplib.model.Erf(1.0), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="not built"):
        network_params(unbuilt)


def test_network_params_reads_float64_weights():
    model = fliplib.erf_network([3, 4, 2], sigma=0.3, seed=0)
    params = network_params(model)
    assert params.activation == "erf" and params.scales == pytest.approx((0.3,))
    assert params.layer_sizes == [3, 4, 2] and params.n_hidden == 1
    assert all(w.dtype.name == "float64" for w in params.weights)


def test_train_refuses_empty_and_ragged_data():
    model = fliplib.erf_network([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="x holds no training inputs"):
        fliplib.train(model, np.zeros((0, 2)), np.zeros(0, dtype=int), epochs=1)
    with pytest.raises(ValueError, match="x must be a rectangular array"):
        fliplib.train(model, [[0.0, 1.0], [1.0]], [0, 1], epochs=1)
    with pytest.raises(TypeError, match="x must hold real numbers"):
        fliplib.train(model, np.array([["a", "b"]]), [0], epochs=1)


def test_load_model_names_a_corrupt_or_missing_file(tmp_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match=r"corrupt.keras' is not a readable Keras model"):
        fliplib.load_model(corrupt)
    with pytest.raises(FileNotFoundError, match="no model file at .*missing.keras"):
        fliplib.load_model(tmp_path / "missing.keras")


@pytest.mark.parametrize("build", [fliplib.erf_network, fliplib.prelu_network])
def test_fold_input_scaling_reads_raw_inputs_as_the_trained_network_read_scaled_ones(build):
    rng = np.random.default_rng(5)
    model = build([4, 6, 5, 3], seed=2)
    shift, scale = rng.normal(size=4) * 10, rng.uniform(0.1, 20, size=4)
    x = rng.normal(size=(7, 4)) * scale + shift
    before = model((x - shift) / scale).numpy()
    assert fliplib.fold_input_scaling(model, shift, scale) is model
    np.testing.assert_allclose(model(x).numpy(), before, rtol=1e-4, atol=1e-4)


def test_fold_input_scaling_takes_numbers_and_refuses_bad_maps():
    model = fliplib.erf_network([3, 4, 2], seed=0)
    x = np.ones((2, 3))
    before = model((x - 1.0) / 2.0).numpy()
    fliplib.fold_input_scaling(model, 1.0, 2.0)
    np.testing.assert_allclose(model(x).numpy(), before, rtol=1e-5, atol=1e-6)
    weights = [w.copy() for w in model.get_weights()]
    for shift, scale, match in [
        (0.0, [1.0, 0.0, 1.0], "positive"),
        (np.zeros(4), 1.0, r"shape \(3,\)"),
        ([0.0, np.nan, 0.0], 1.0, "NaN"),
        (0.0, -1.0, "positive"),
    ]:
        with pytest.raises(ValueError, match=match):
            fliplib.fold_input_scaling(model, shift, scale)
    # nothing half-written: the weights are untouched after every refusal
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
