"""FlipOptions: one documented set of tunables, checked when made."""

import pytest

from fliplib import FlipOptions


@pytest.mark.parametrize("changes, error, match", [
    (dict(adaptive="no"), TypeError, "adaptive must be True or False"),
    (dict(n_rows=0), ValueError, "n_rows must be a positive integer"),
    (dict(n_rows=-5), ValueError, "n_rows must be a positive integer"),
    (dict(n_rows=1.7), ValueError, "n_rows must be a positive integer"),
    (dict(restarts=1, seed=-3), ValueError, "seed must be a non-negative integer"),
    (dict(restarts=1, seed="abc"), ValueError, "seed must be a non-negative integer"),
    (dict(eta=0), ValueError, "eta must be a positive integer"),
    (dict(schedule="log"), ValueError, "schedule must be"),
    (dict(fallback="sometimes"), ValueError, "fallback must be"),
    (dict(gap_tol=0), ValueError, "gap_tol must be a positive"),
    (dict(search_perturbations=(0.5, 2.0)), ValueError, "search_perturbations"),
    (dict(tau=-1.0), ValueError, "tau must be a positive"),
])
def test_bad_options_name_the_option(changes, error, match):
    with pytest.raises(error, match=match):
        FlipOptions(**changes)


def test_options_from_dict_instance_or_none():
    assert FlipOptions.from_any(None) == FlipOptions()
    assert FlipOptions.from_any({"max_iter": 7}).max_iter == 7
    opts = FlipOptions(eta=2)
    assert FlipOptions.from_any(opts) is opts
    assert opts.replace(eta=3).eta == 3 and opts.eta == 2
    with pytest.raises(TypeError, match="unknown options \\['maxiter'\\]"):
        FlipOptions.from_any({"maxiter": 7})
    with pytest.raises(TypeError, match="options must be a FlipOptions, a dict or None"):
        FlipOptions.from_any([("eta", 2)])
