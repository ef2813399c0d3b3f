"""Does fliplib find the *closest* flip point?  Checked against an exhaustive search in the plane.

Usage::

    .venv/bin/python benchmarks/bench_global.py                       # default, direct, restarts=3
    .venv/bin/python benchmarks/bench_global.py --method default --kwargs '{"restarts": 1}' --label r1
    .venv/bin/python benchmarks/bench_global.py --inputs 4 --check-resolution 2
    .venv/bin/python benchmarks/bench_global.py --merge a.json b.json   # runs with different solvers

On random erf and ReLU networks with two inputs (:func:`fliplib.plane.plane_problems`: depths 2
to 8, widths 12 to 64, 3 to 5 classes, erf widths 0.3 and 2, with and without a box), the
exhaustive reference (:func:`fliplib.plane.exhaustive_flip_points`) finds every local minimum of
the distance on the boundary set and hence the closest flip point of every (input, target)
problem.  Each solver under test is ``fliplib.closest_flip_points(model, X, "all", **kwargs)``
(with ``lower``/``upper`` when the problem has a box), one batched call per network.  A problem
counts when the reference has a flip point and is certified (see
:class:`fliplib.plane.PlaneFlipPoints`); then fliplib's answer is

- *global*: a flip point (``success``) within 1% of the reference's distance;
- *farther*: a flip point more than 1% farther (a farther local minimum, or not a minimum);
- *missed*: no flip point (``success`` False, status 2 or more).

Also reported: the worst distance ratio fliplib / reference, answers with status 1, answers more
than 0.1% *closer* than the reference (which would be a failure of the reference), and problems
where fliplib finds a flip point inside the search window but the reference finds none.  Written
to ``benchmarks/results/global_benchmarks.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fliplib  # noqa: E402
from bench_flip import Clock, machine, write_atomic  # noqa: E402  (the benchmarks' shared helpers)
from fliplib.plane import GLOBAL_TOL, exhaustive_flip_points, plane_problems, trace_boundaries, verdict  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "global_benchmarks.json"

#: The solvers measured by default: name -> keyword arguments of closest_flip_points.
PRESETS: dict[str, dict] = {
    "default": {},
    "direct": {"method": "direct", "search": "local"},
    "restarts3": {"search": "local", "options": {"restarts": 3}},
    "local": {"search": "local"},
}


def solve(model, x, lower, upper, **kwargs):
    """fliplib's answer to every (input, target) problem of one network (one batched call)."""
    bounds = {} if lower is None else {"lower": lower, "upper": upper}
    return fliplib.closest_flip_points(model, x, "all", **bounds, **kwargs)


def references(problem, *, resolution: int, refine: int, margin: float) -> tuple[list, float]:
    """The exhaustive reference (:class:`fliplib.plane.PlaneFlipPoints`) of every (input, target)
    problem of one network, and its CPU time."""
    lo, hi = problem.window
    started = time.process_time()
    boundaries = trace_boundaries(problem.model, lo, hi, resolution=resolution, refine=refine, margin=margin)
    refs = []
    for n, x in enumerate(problem.x):
        source = int(np.argmax(fliplib.baselines.numpy_logits(problem.model, x)[0]))
        for j in range(boundaries.n_classes):
            if j != source:
                refs.append((n, j, exhaustive_flip_points(problem.model, x, target=j, lower=lo, upper=hi,
                                                          bounded=problem.bounded, boundaries=boundaries)))
    return refs, time.process_time() - started


def judge(problem, refs: list, result) -> list[dict]:
    """Per problem: the reference's and fliplib's distances and the verdict
    (:func:`fliplib.plane.verdict`)."""
    out = []
    for n, j, ref in refs:
        ok = bool(result.success[n, j])
        d = float(result.distance[n, j])
        category = verdict(ref, ok, d, result.x[n, j], tol=GLOBAL_TOL)
        row = {"network": problem.name, "kind": problem.kind, "input": n, "target": j,
               "reference": ref.distance if ref.exists else None, "fliplib": d if ok else None,
               "status": int(result.status[n, j]), "ref_exists": ref.exists,
               "certified": ref.certified, "n_local_minima": len(ref.distances), "category": category}
        if category in ("global", "farther"):
            row["ratio"] = d / ref.distance if ref.distance > 0 else (1.0 if d == 0 else np.inf)
            row["closer_than_reference"] = bool(row["ratio"] < 1 - 1e-3)
        out.append(row)
    return out


def summarise(rows: list[dict]) -> dict:
    frame = pd.DataFrame(rows)
    counted = frame[frame.category.isin(["global", "farther", "missed"])]
    n = len(counted)
    ratios = counted["ratio"].dropna() if "ratio" in counted else pd.Series(dtype=float)
    closer = counted.get("closer_than_reference", pd.Series(dtype=object))
    return {
        "problems": int(n),
        "global": int((counted.category == "global").sum()),
        "farther": int((counted.category == "farther").sum()),
        "missed": int((counted.category == "missed").sum()),
        "global_share": float((counted.category == "global").mean()) if n else float("nan"),
        "farther_share": float((counted.category == "farther").mean()) if n else float("nan"),
        "missed_share": float((counted.category == "missed").mean()) if n else float("nan"),
        "worst_ratio": float(ratios.max()) if len(ratios) else float("nan"),
        "status_1": int((counted.status == 1).sum()),
        "closer_than_reference": int(closer.fillna(False).astype(bool).sum()),
        "fliplib_only": int((frame.category == "fliplib only").sum()),
        "no_flip_point": int((frame.category == "none").sum()),
        "uncertified": int((frame.category == "uncertified").sum()),
    }


def check_resolution(problems, refs_by_net, count: int, resolution: int, refine: int, margin: float) -> dict:
    """Recompute the references of the first ``count`` networks on a grid twice as fine per side
    at both levels, and compare the closest distances."""
    diffs, changed, total = [], 0, 0
    for problem in problems[:count]:
        fine, _ = references(problem, resolution=2 * resolution, refine=2 * refine, margin=margin)
        for (_, _, a), (_, _, b) in zip(refs_by_net[problem.name], fine):
            total += 1
            if a.exists != b.exists:
                changed += 1
                continue
            if a.exists:
                rel = abs(a.distance - b.distance) / max(b.distance, 1e-12)
                diffs.append(rel)
                changed += int(rel > 1e-6)
    return {"networks": min(count, len(problems)), "problems": total, "changed": changed,
            "max_relative_difference": float(max(diffs)) if diffs else float("nan"),
            "resolution": 2 * resolution, "refine": 2 * refine}


def print_table(summary: list[dict], resolution_checks: dict) -> None:
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print(pd.DataFrame(summary).to_string(index=False))
        if resolution_checks:
            print(pd.DataFrame(resolution_checks).T.to_string())


def merge(paths: list[Path], output: Path) -> None:
    """Combine results files whose runs measured different solvers on the same problems."""
    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    out = dict(runs[0])
    out["command"] = [run["command"] for run in runs]
    out["machine"] = [run["machine"] for run in runs]
    out["settings"] = dict(runs[0]["settings"], solvers={k: v for run in runs for k, v in run["settings"]["solvers"].items()})
    out["summary"] = [row for run in runs for row in run["summary"]]
    timing = {}
    for run in runs:
        for entry in run["timing"]:
            timing.setdefault(entry["network"], {}).update(entry)
    out["timing"] = list(timing.values())
    out["resolution_check"] = next((run["resolution_check"] for run in runs if run["resolution_check"]), {})
    out["problems"] = [row for run in runs for row in run["problems"]]
    print_table(out["summary"], out["resolution_check"])
    write_atomic(output, out)
    print(f"wrote {output}")


def results(args, solvers, state, started, rows, timing, resolution_checks, argv, complete: bool) -> dict:
    """The results file's content (also written after every network, marked incomplete)."""
    summary = []
    for name, solver_rows in rows.items():
        for kind in args.kinds:
            kind_rows = [r for r in solver_rows if r["kind"] == kind]
            if kind_rows:
                summary.append({"solver": name, "kind": kind, **summarise(kind_rows)})
    state = dict(state, load_average_1min_at_end=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    return {
        "date": started.isoformat(timespec="seconds"),
        "complete": complete,
        "command": "benchmarks/bench_global.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": state,
        "settings": {"solvers": solvers, "resolution": args.resolution, "refine": args.refine,
                     "inputs": args.inputs, "relu_inputs": args.relu_inputs, "global_tol": GLOBAL_TOL,
                     "margin": args.margin},
        "summary": summary,
        "timing": timing,
        "resolution_check": resolution_checks,
        "problems": [r for solver_rows in rows.values() for r in solver_rows],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", nargs="+", default=list(PRESETS), choices=list(PRESETS),
                        help="preset solvers to measure (keyword arguments in PRESETS)")
    parser.add_argument("--kwargs", type=json.loads, default=None,
                        help="JSON keyword arguments of closest_flip_points for one more solver, "
                             "e.g. '{\"method\": \"direct\"}'")
    parser.add_argument("--label", default="custom", help="name of the --kwargs solver")
    parser.add_argument("--kinds", nargs="+", default=["erf", "prelu"], choices=["erf", "prelu"])
    parser.add_argument("--inputs", type=int, default=8, help="inputs per erf network")
    parser.add_argument("--relu-inputs", type=int, default=6, help="inputs per ReLU network")
    parser.add_argument("--networks", type=int, default=None, help="use only the first N networks")
    parser.add_argument("--resolution", type=int, default=256, help="coarse grid cells per side")
    parser.add_argument("--refine", type=int, default=8, help="refinement of the cells near the boundary")
    parser.add_argument("--check-resolution", type=int, default=0, metavar="N",
                        help="recompute the references of the first N networks of each kind on a grid "
                             "twice as fine and report the differences")
    parser.add_argument("--margin", type=float, default=1e-3,
                        help="lead over the other classes asked by the reference; closest_flip_points' "
                             "default margin (pass the same margin to the solvers when changing it)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="FILE",
                        help="only combine results files of runs with different solvers (run in "
                             "parallel on the same problems) into --output, and print the table")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, args.output)
        return
    solvers = {name: PRESETS[name] for name in args.method}
    if args.kwargs is not None:
        if not isinstance(args.kwargs, dict):
            raise SystemExit(f"--kwargs must be a JSON object, got {args.kwargs!r}")
        solvers[args.label] = args.kwargs
    state = machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = {name: [] for name in solvers}
    timing = []
    resolution_checks = {}
    by_kind = {kind: plane_problems(kind, n_inputs=args.inputs if kind == "erf" else args.relu_inputs)[: args.networks]
               for kind in args.kinds}
    refs_by_net = {}
    # Erf and ReLU networks alternate, so that an interrupted run has both kinds.
    for k in range(max(len(problems) for problems in by_kind.values())):
        for kind, problems in by_kind.items():
            if k >= len(problems):
                continue
            problem = problems[k]
            refs, ref_cpu = references(problem, resolution=args.resolution, refine=args.refine, margin=args.margin)
            print(f"{problem.name}: {len(refs)} problems, reference {ref_cpu:.1f} CPU s", flush=True)
            refs_by_net[problem.name] = refs
            entry = {"network": problem.name, "kind": kind, "problems": len(refs), "reference_cpu_s": ref_cpu}
            bounds = (problem.lower, problem.upper) if problem.bounded else (None, None)
            solve(problem.model, problem.x[:1], *bounds)  # untimed: compiles the SQP step
            for name, kwargs in solvers.items():
                with Clock() as clock:
                    result = solve(problem.model, problem.x, *bounds, **kwargs)
                entry[f"{name}_cpu_s"] = clock.cpu
                print(f"  {name}: {clock.cpu:.1f} CPU s", flush=True)
                for row in judge(problem, refs, result):
                    rows[name].append({**row, "solver": name})
            timing.append(entry)
            write_atomic(args.output, results(args, solvers, state, started, rows, timing,
                                              resolution_checks, argv, complete=False))
    if args.check_resolution:
        for kind, problems in by_kind.items():
            resolution_checks[kind] = check_resolution(problems, refs_by_net, args.check_resolution,
                                                       args.resolution, args.refine, args.margin)
    out = results(args, solvers, state, started, rows, timing, resolution_checks, argv, complete=True)
    print_table(out["summary"], resolution_checks)
    write_atomic(args.output, out)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
