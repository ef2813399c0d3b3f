"""How many Jacobian rows an SQP iteration needs on the MNIST-size network (``n_rows``).

Usage::

    .venv/bin/python benchmarks/bench_rows.py [--inputs 100] [--rows 1 2]

Each iteration of fliplib's solver (and of SLSQP) linearises the equality ``z_i = z_j`` and the
inequalities ``z_i >= z_k + margin`` of every other class: nine rows of the logit Jacobian on a
10-class network, most of an iteration's arithmetic.  ``closest_flip_points(..., n_rows=r)``
linearises only the target and the ``r - 1`` classes closest to winning.  If few inequalities
bound the closest flip point, fewer rows would make each iteration cheaper at no loss; this script
measures whether they do, on the network and inputs of ``bench_flip.py`` (Table A1's MNIST-size
architecture, random Glorot weights, seed 0, standard-normal inputs, box [-8, 8]), every other
class of each input:

- the share of flip points at which another class is active (``min_margin`` within 1e-6 of the
  margin), with all rows (the default);
- for each ``n_rows``: success, Jacobian evaluations per problem, CPU seconds, and the distance
  ratio to the default's answer on the problems both solve.

Printed only (no results file): this is the measurement behind a paragraph of
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

import fliplib
from bench_flip import BOX, Clock  # the benchmarks' shared helpers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    sizes = fliplib.ARCHITECTURES["mnist"]
    model = fliplib.erf_network(sizes, seed=0)
    x = np.random.default_rng(0).normal(size=(args.inputs, sizes[0]))
    fliplib.closest_flip_points(model, x[:1], 'all', lower=-BOX, upper=BOX, options=dict(max_iter=1))  # compile, untimed
    rows, results = [], {}
    for n_rows in [None, *args.rows]:
        with Clock() as clock:
            res = fliplib.closest_flip_points(model, x, 'all', lower=-BOX, upper=BOX, options=dict(n_rows=n_rows))
        done = res.status != -1
        results[n_rows] = res
        both = done & res.success & results[None].success
        ratio = res.distance[both] / results[None].distance[both]
        rows.append({"n_rows": "all (9)" if n_rows is None else n_rows, "problems": int(done.sum()),
                     "success": float(res.success[done].mean()),
                     "Jacobian evaluations per problem": float(res.n_jacobian_evals[done].mean()),
                     "CPU s": clock.cpu, "distance ratio to all rows: median": float(np.median(ratio)),
                     "max": float(ratio.max())})
    default = results[None]
    ok = (default.status != -1) & default.success
    active = np.mean(default.min_margin[ok] <= 1e-3 + 1e-6)
    print(f"flip points (all rows) at which another class is active: {active:.1%} of {ok.sum()}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
