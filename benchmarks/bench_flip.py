"""fliplib's batched homotopy against per-point SciPy SLSQP, side by side in one run.

Usage::

    .venv/bin/python benchmarks/bench_flip.py [--inputs 1000] [--slsqp-sample 30] [--skip-cifar]

Networks: the MNIST-size (100 inputs, 12 hidden layers, 10 classes) and CIFAR-size (2,500 inputs,
12 hidden layers, 2 classes) architectures of Table A1, with random Glorot weights (seed 0,
sigma = 1) and standard-normal inputs, so the script needs no data and no training.  For each
network it prints flip points per second for both methods, the speed ratio (ratios, not absolute
seconds, are what the benchmark is for), success rates and the distribution of the distance
ratio fliplib / SLSQP on the problems both solved.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

import fliplib
from fliplib.baselines import numpy_logits, slsqp_flip_point


def slsqp_feasible(model, x_hat, source, target, tol=1e-6):
    z = numpy_logits(model, x_hat)[0]
    others = np.delete(z, [source, target])
    bound = tol * max(1.0, abs(z[source]))
    return abs(z[source] - z[target]) <= bound and bool(np.all(z[source] - others > bound))


def bench(name, sizes, n_inputs, slsqp_sample, seed=0):
    model = fliplib.erf_network(sizes, seed=seed)
    x = np.random.default_rng(seed).normal(size=(n_inputs, sizes[0]))
    fliplib.closest_flip_points(model, x[:2], "all")  # compile once, outside the timing
    t0 = time.perf_counter()
    res = fliplib.closest_flip_points(model, x, "all", batch_size=2048)
    t_flip = time.perf_counter() - t0
    done = res.status != -1
    n_flip = int(done.sum())

    rows = []
    t0 = time.perf_counter()
    pairs = np.argwhere(done)[:slsqp_sample]
    for i, j in pairs:
        ref = slsqp_flip_point(model, x[i], int(res.source[i, j]), int(j))
        ok = slsqp_feasible(model, ref["x"], int(res.source[i, j]), int(j))
        rows.append((ok, ref["distance"], res.success[i, j], res.distance[i, j]))
    t_slsqp = time.perf_counter() - t0
    frame = pd.DataFrame(rows, columns=["slsqp_ok", "slsqp_distance", "fliplib_ok", "fliplib_distance"])
    both = frame.slsqp_ok & frame.fliplib_ok
    ratio = frame.fliplib_distance[both] / frame.slsqp_distance[both]
    rate_flip = n_flip / t_flip
    rate_slsqp = len(pairs) / t_slsqp
    return {
        "network": name,
        "fliplib problems": n_flip,
        "fliplib flip points / s": rate_flip,
        "fliplib success": float(res.success[done].mean()),
        "SLSQP problems": len(pairs),
        "SLSQP flip points / s": rate_slsqp,
        "SLSQP success": float(frame.slsqp_ok.mean()),
        "speed ratio": rate_flip / rate_slsqp,
        "distance ratio median": float(ratio.median()) if len(ratio) else np.nan,
        "distance ratio q95": float(ratio.quantile(0.95)) if len(ratio) else np.nan,
        "distance ratio max": float(ratio.max()) if len(ratio) else np.nan,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000, help="inputs for fliplib (each with 9 targets on MNIST)")
    parser.add_argument("--slsqp-sample", type=int, default=30, help="problems solved by SLSQP")
    parser.add_argument("--cifar-inputs", type=int, default=200)
    parser.add_argument("--skip-cifar", action="store_true")
    args = parser.parse_args()
    results = [bench("MNIST-size (Table A1)", fliplib.ARCHITECTURES["mnist"], args.inputs, args.slsqp_sample)]
    if not args.skip_cifar:
        results.append(bench("CIFAR-size (Table A1)", fliplib.ARCHITECTURES["cifar10"], args.cifar_inputs,
                             max(5, args.slsqp_sample // 3)))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(results).set_index("network").T.to_string())


if __name__ == "__main__":
    main()
