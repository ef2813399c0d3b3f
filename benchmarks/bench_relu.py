"""fliplib on random deep ReLU networks (App. F), against per-point SciPy SLSQP.

Usage::

    .venv/bin/python benchmarks/bench_relu.py [--seeds 3 5 7] [--output benchmarks/results/relu_benchmarks.json]

A ReLU network is piecewise linear: its flip points lie on flat pieces of boundary that meet at
kinks, and every solver can stall in a local minimum of the constraint violation or end at a
locally closest flip point that is not the closest.  This script measures how often, on random
PReLU networks with ``alpha = 0`` (plain ReLU; Glorot weights from ``prelu_network(seed=s)``) and
standard-normal inputs (``default_rng(s)``), for every input and every other class:

- fliplib with ``fallback="failed"`` (the erf default) and ``fallback="closer"`` (the PReLU
  default of ``fallback="auto"``), one batched call each;
- SciPy's SLSQP from ``x``, one problem at a time with one BLAS thread
  (:func:`fliplib.baselines.slsqp_flip_point`).

Every answer is judged by the same rule (:func:`fliplib.studies.experiments.is_flip_point` on
:func:`fliplib.flip_evidence`).  Printed and written to the results file, per network: success
rates, the problems only one side solves, the distance ratio fliplib / SLSQP on the problems both
solve (median, maximum, and the shares more than 0.1% above and below 1), and CPU seconds.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

import fliplib
from bench_flip import Clock, judged, machine, write_atomic  # the benchmarks' shared helpers
from fliplib.baselines import slsqp_flip_point

RESULTS = Path(__file__).resolve().parent / "results" / "relu_benchmarks.json"
#: Layer sizes (inputs, hidden..., classes) and inputs per network.
NETWORKS = [([4, 12, 12, 3], 20), ([6, 16, 16, 16, 3], 15), ([6, 20, 20, 20, 4], 15),
            ([8, 24, 24, 24, 24, 24, 4], 12), ([10, 32, 32, 32, 32, 5], 12)]


def run_network(sizes: list[int], n: int, seed: int) -> dict:
    """All three solvers on one network; the row of the results table."""
    model = fliplib.prelu_network(sizes, alpha=0.0, seed=seed)
    x = np.random.default_rng(seed).normal(size=(n, sizes[0]))
    row = {"network": "-".join(map(str, sizes)), "seed": seed, "inputs": n}
    results = {}
    # Untimed: the first call on a network kind compiles the SQP step (seconds), which would
    # otherwise be charged to whichever fallback runs first.
    fliplib.closest_flip_points(model, x[:2], "all")
    for fallback in ("failed", "closer"):
        with Clock() as clock:
            results[fallback] = fliplib.closest_flip_points(model, x, 'all', options=dict(fallback=fallback))
        row[f"cpu_s_{fallback}"] = clock.cpu
    res = results["closer"]
    pairs = np.argwhere(res.status != -1)
    src, tgt = res.source[pairs[:, 0], pairs[:, 1]], pairs[:, 1]
    with threadpool_limits(1), Clock() as clock:
        points = np.array([slsqp_flip_point(model, x[i], int(s), int(j))["x"] for (i, j), s in zip(pairs, src)])
    row["cpu_s_slsqp"] = clock.cpu
    ok_s = judged(model, x[pairs[:, 0]], points, src, tgt)
    d_s = np.linalg.norm(points - x[pairs[:, 0]], axis=1)
    row["problems"] = len(pairs)
    row["success_slsqp"] = float(ok_s.mean())
    for fallback, r in results.items():
        ok_f = r.success[pairs[:, 0], pairs[:, 1]]
        d_f = r.distance[pairs[:, 0], pairs[:, 1]]
        both = ok_f & ok_s
        ratio = d_f[both] / d_s[both]
        row[f"success_{fallback}"] = float(ok_f.mean())
        row[f"only_fliplib_{fallback}"] = int(np.sum(ok_f & ~ok_s))
        row[f"only_slsqp_{fallback}"] = int(np.sum(ok_s & ~ok_f))
        row[f"ratio_median_{fallback}"] = float(np.median(ratio)) if ratio.size else float("nan")
        row[f"ratio_max_{fallback}"] = float(np.max(ratio)) if ratio.size else float("nan")
        row[f"share_above_{fallback}"] = float(np.mean(ratio > 1.001)) if ratio.size else float("nan")
        row[f"share_below_{fallback}"] = float(np.mean(ratio < 0.999)) if ratio.size else float("nan")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    state = machine()
    cases = [(sizes, n, seed) for seed in args.seeds for sizes, n in NETWORKS]
    rows = [run_network(*case) for case in tqdm(cases, desc="ReLU networks")]
    table = pd.DataFrame(rows)
    total = {"problems": int(table["problems"].sum())}
    for key in ("failed", "closer", "slsqp"):
        total[f"solved_{key}"] = int(np.round(table[f"success_{key}"] * table["problems"]).sum())
        total[f"cpu_s_{key}"] = float(table[f"cpu_s_{key}"].sum())
    for key in ("failed", "closer"):
        total[f"only_fliplib_{key}"] = int(table[f"only_fliplib_{key}"].sum())
        total[f"only_slsqp_{key}"] = int(table[f"only_slsqp_{key}"].sum())
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.precision", 4):
        print(table.to_string(index=False))
        print(pd.Series(total).to_string())
    state["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": state, "rows": rows, "total": total}
    write_atomic(args.output, out)  # nothing half-written
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
