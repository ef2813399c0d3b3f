"""Same answers before and after a change of the solver: every (input, target) problem of the
Table A1 MNIST-size and CIFAR-size networks of ``bench_flip.py`` (random Glorot weights, seed 0,
standard-normal inputs, box [-8, 8]), solved by the local method (the homotopy and its fallbacks,
without the global stage), with distances, statuses, Jacobian evaluations and CPU seconds.

Usage (the fliplib on ``PYTHONPATH`` is the one measured)::

    git worktree add /tmp/before d5caae5
    PYTHONPATH=/tmp/before .venv/bin/python benchmarks/same_answers.py /tmp/before.json
    .venv/bin/python benchmarks/same_answers.py /tmp/after.json
    .venv/bin/python benchmarks/same_answers.py --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

SIZES = {"mnist": 60, "cifar10": 30}  # inputs per network (MNIST-size: 540 problems)


def solve(path: str) -> None:
    import fliplib

    local = {"search": "local"} if hasattr(fliplib, "FlipOptions") else {}  # before the global stage: none
    out = {}
    for name, n in SIZES.items():
        sizes = fliplib.ARCHITECTURES[name]
        model = fliplib.erf_network(sizes, seed=0)
        x = np.random.default_rng(0).normal(size=(n, sizes[0]))
        fliplib.closest_flip_points(model, x[:2], "all", lower=-8, upper=8, **local)  # compile outside the timing
        cpu, wall = time.process_time(), time.perf_counter()
        res = fliplib.closest_flip_points(model, x, "all", lower=-8, upper=8, **local)
        done = res.status != -1
        out[name] = {"distance": np.where(res.success, res.distance, np.nan)[done].tolist(),
                     "status": res.status[done].tolist(), "jac": res.n_jacobian_evals[done].tolist(),
                     "cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}
    with open(path, "w") as f:
        json.dump(out, f)


def compare(before: str, after: str) -> None:
    a, b = (json.load(open(p)) for p in (before, after))
    for name in a:
        da, db = (np.array(r[name]["distance"], dtype=float) for r in (a, b))
        both = ~np.isnan(da) & ~np.isnan(db)
        rel = np.abs(da[both] - db[both]) / da[both]
        print(f"{name}: {len(da)} problems; statuses equal on {np.mean(np.equal(a[name]['status'], b[name]['status'])):.1%},"
              f" Jacobian evaluations on {np.mean(np.equal(a[name]['jac'], b[name]['jac'])):.1%};"
              f" largest relative distance change {rel.max():.1e}; CPU s {a[name]['cpu']:.1f} -> {b[name]['cpu']:.1f}")


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        solve(sys.argv[1])
