"""The top-level namespace: the core API, with the other modules imported on first use."""

import subprocess
import sys
import textwrap

import fliplib

# What `import fliplib` must not load.  Keras itself imports Matplotlib, scikit-learn and
# scipy.optimize when they are installed, so the check is on what fliplib adds to the modules
# that TensorFlow and Keras already loaded.
NOT_EAGER = ("fliplib.plotting", "fliplib.baselines", "fliplib.datasets", "fliplib.studies", "matplotlib",
             "seaborn", "scipy.optimize", "contourpy", "pywt")


def test_import_loads_no_plotting_baseline_or_study_module():
    code = textwrap.dedent(
        f"""
        import sys
        import keras, tensorflow
        before = set(sys.modules)
        import fliplib
        added = set(sys.modules) - before
        print(sorted(m for m in added if m.startswith({NOT_EAGER!r})))
        print("fliplib.plotting" in sys.modules, "seaborn" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "False False"


def test_submodules_load_on_first_use():
    assert fliplib.datasets.load_mnist.__module__ == "fliplib.datasets"
    assert fliplib.plotting.grid_logits.__module__ == "fliplib.plotting"
    assert fliplib.studies.__name__ == "fliplib.studies"
    assert {"baselines", "boundary", "mixed", "plotting"} <= set(dir(fliplib))


def test_unknown_attribute_is_an_attribute_error():
    try:
        fliplib.no_such_module
    except AttributeError as err:
        assert "no_such_module" in str(err)
    else:
        raise AssertionError("fliplib.no_such_module did not raise")
