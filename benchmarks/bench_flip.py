"""fliplib's batched homotopy against per-point SciPy SLSQP (and Foolbox's minimum-norm attacks).

Usage::

    .venv/bin/python benchmarks/bench_flip.py [--inputs 1000] [--slsqp-sample 30] [--skip-cifar]
                                              [--attacks-sample 20] [--output benchmarks/results/flip_benchmarks.json]

Networks: the MNIST-size (100 inputs, 12 hidden layers, 10 classes) and CIFAR-size (2,500 inputs,
12 hidden layers, 2 classes) architectures of Table A1, with random Glorot weights (seed 0,
sigma = 1) and standard-normal inputs, so the script needs no data and no training. All methods
solve within the same box, [-8, 8] in every feature.

For each network it prints, and writes to the results file that the book's Performance page
(book/performance.ipynb) reads, the flip points per CPU second of each method, the speed ratio
(ratios, not absolute seconds, are what the benchmark is for), success rates and, per problem,
the distances, from which the page computes the distance ratios. Time is measured as CPU time
(user + system, all threads) as well as wall time: on a shared machine the CPU time is the
steadier of the two.

Every method's answer is judged by the same rule, :func:`fliplib.studies.experiments.is_flip_point` on
:func:`fliplib.flip_evidence` (logit gap <= 1e-6 max(1, |z_i|), other logits below by more than
that). A minimum-norm attack answers a different question, the nearest point of *another* class,
so its distance is compared with the closest flip point over all targets (``FlipResult.closest``),
and its success is that the class changed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

import fliplib
from fliplib.baselines import slsqp_flip_point
from fliplib.studies.experiments import is_flip_point

RESULTS = Path(__file__).resolve().parent / "results" / "flip_benchmarks.json"
#: Every method gets the same box bounds (Foolbox needs finite ones); the standard-normal inputs
#: lie well inside, so the box is rarely active.
BOX = 8.0
#: Foolbox's defaults, except Carlini-Wagner's 9 x 10,000 steps, cut to fit the benchmark.
ATTACK_OPTIONS = {"cw": {"binary_search_steps": 5, "steps": 500}}
#: BLAS threads for SLSQP (the fastest setting per CPU second and per wall second).
SLSQP_BLAS_THREADS = 1
NETWORKS = {"MNIST-size (Table A1)": "mnist", "CIFAR-size (Table A1)": "cifar10"}


class Clock:
    """Wall and CPU seconds (user + system, every thread of the process) of a ``with`` block."""

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def judged(model, x, x_hat, source, target) -> np.ndarray:
    """fliplib's own success rule, applied to points from any method."""
    evidence = fliplib.flip_evidence(model, x, x_hat, source, target)
    return is_flip_point(evidence)


def summary_row(network: str, method: str, problems: pd.DataFrame, clock: Clock) -> dict:
    return {
        "network": network,
        "method": method,
        "problems": len(problems),
        "successes": int(problems.success.sum()),
        "jacobian_evals": int(problems["n_jacobian_evals"].sum()) if "n_jacobian_evals" in problems else None,
        "cpu_seconds": clock.cpu,
        "wall_seconds": clock.wall,
    }


#: fliplib's variants: label -> (target, keyword arguments).  "fliplib" is the default (the
#: homotopy, then the global stage) over all targets; "fliplib local" the local method alone
#: (the solver before the global stage); "fliplib any" the closest flip point over all other
#: classes as one search per input.
FLIPLIB_VARIANTS = {
    "fliplib": ("all", {}),
    "fliplib local": ("all", {"search": "local"}),
    "fliplib any": ("any", {}),
}


def bench_fliplib(network, model, x, variant: str = "fliplib"):
    target, kwargs = FLIPLIB_VARIANTS[variant]
    fliplib.closest_flip_points(model, x[:2], target, lower=-BOX, upper=BOX, **kwargs)  # compile outside the timing
    with Clock() as clock:
        res = fliplib.closest_flip_points(model, x, target, lower=-BOX, upper=BOX, options=dict(batch_size=2048),
                                          **kwargs)
    if target == "any":
        done = np.stack([np.arange(len(x)), res.target], axis=1)
        flat = {name: getattr(res, name) for name in ("source", "success", "distance", "n_jacobian_evals")}
    else:
        done = np.argwhere(res.status != -1)
        flat = {name: getattr(res, name)[done[:, 0], done[:, 1]]
                for name in ("source", "success", "distance", "n_jacobian_evals")}
    problems = pd.DataFrame({"network": network, "method": variant, "input": done[:, 0], "target": done[:, 1], **flat})
    return res, problems, summary_row(network, variant, problems, clock)


def bench_slsqp(network, model, x, res, sample: int):
    pairs = np.argwhere(res.status != -1)[:sample]
    points = []
    # One BLAS thread: SLSQP's matrices are small, and a second thread only spins (it doubled the
    # CPU time and tripled the wall time of the MNIST-size problems in our runs). One process
    # per core is how per-point solves are best parallelised.
    with threadpool_limits(limits=SLSQP_BLAS_THREADS), Clock() as clock:
        for i, j in tqdm(pairs, desc=f"SLSQP, {network}", leave=False):
            points.append(slsqp_flip_point(model, x[i], int(res.source[i, j]), int(j), lower=-BOX, upper=BOX)["x"])
    source = res.source[pairs[:, 0], pairs[:, 1]]
    x_hat = np.array(points).reshape(len(pairs), x.shape[1])
    problems = pd.DataFrame({
        "network": network, "method": "SLSQP", "input": pairs[:, 0], "source": source, "target": pairs[:, 1],
        "success": judged(model, x[pairs[:, 0]], x_hat, source, pairs[:, 1]),
        "distance": np.linalg.norm(x_hat - x[pairs[:, 0]], axis=1),
    })
    return problems, summary_row(network, "SLSQP", problems, clock)


def bench_attacks(network, model, x, res, sample: int, attacks: list[str]):
    """Foolbox's minimum-norm attacks through :func:`fliplib.studies.attacks.minimum_norm_attack`.

    One row per input: the attack moves away from the predicted class (fliplib's source class)
    to whichever class is nearest; its target is the class it lands in.
    """
    from fliplib.studies.attacks import minimum_norm_attack

    inputs = np.arange(min(sample, len(x)))
    labels = res.source[inputs, 0] if res.source.ndim == 2 else res.source[inputs]
    frames, summaries = [], []
    for name in tqdm(attacks, desc=f"Foolbox, {network}", leave=False):
        options = ATTACK_OPTIONS.get(name, {})
        minimum_norm_attack(model, x[:2], labels[:2], attack=name, lower=-BOX, upper=BOX, **options)  # tracing
        with Clock() as clock:
            found = minimum_norm_attack(model, x[inputs], labels, attack=name, lower=-BOX, upper=BOX, **options)
        landed = np.argmax(np.asarray(model(found.x.astype(np.float32), training=False)), axis=1)
        problems = pd.DataFrame({
            "network": network, "method": f"Foolbox {name}", "input": inputs, "source": labels,
            "target": landed, "success": found.success, "distance": found.distance,
        })
        frames.append(problems)
        summaries.append(summary_row(network, f"Foolbox {name}", problems, clock))
    return frames, summaries


def foolbox_available() -> bool:
    try:
        import foolbox  # noqa: F401
    except ImportError:
        print('Foolbox is not installed (pip install "foolbox>=3.3.4"): the attacks are left out')
        return False
    return True


def bench(network: str, n_inputs: int, slsqp_sample: int, attacks_sample: int, attacks: list[str], seed: int = 0):
    sizes = fliplib.ARCHITECTURES[NETWORKS[network]]
    model = fliplib.erf_network(sizes, seed=seed)
    x = np.random.default_rng(seed).normal(size=(n_inputs, sizes[0]))
    if np.abs(x).max() >= BOX:
        raise ValueError(f"an input lies outside the box [-{BOX}, {BOX}] that all methods share")
    frames, summaries, results = [], [], {}
    for variant in FLIPLIB_VARIANTS:
        results[variant], rows, summary = bench_fliplib(network, model, x, variant)
        frames.append(rows)
        summaries.append(summary)
    res = results["fliplib"]
    slsqp_rows, slsqp_summary = bench_slsqp(network, model, x, res, slsqp_sample)
    frames, summaries = frames + [slsqp_rows], summaries + [slsqp_summary]
    if attacks_sample and attacks and foolbox_available():
        attack_rows, attack_summaries = bench_attacks(network, model, x, res, attacks_sample, attacks)
        frames += attack_rows
        summaries += attack_summaries
    return pd.concat(frames, ignore_index=True), summaries


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "fliplib": fliplib.__version__,
    }


def write_atomic(path: Path, payload: dict) -> None:
    """Write JSON to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as stream:
        json.dump(payload, stream, indent=1, allow_nan=True)
        stream.write("\n")
    os.chmod(stream.name, 0o644)  # a temporary file is created readable by its owner only
    os.replace(stream.name, path)


def print_summary(summary: pd.DataFrame) -> None:
    table = summary.assign(
        success=summary.successes / summary.problems,
        per_cpu_second=summary.problems / summary.cpu_seconds,
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000, help="inputs for fliplib (each with 9 targets on MNIST)")
    parser.add_argument("--slsqp-sample", type=int, default=30, help="problems solved by SLSQP (MNIST-size)")
    parser.add_argument("--cifar-inputs", type=int, default=200)
    parser.add_argument("--cifar-slsqp-sample", type=int, default=None, help="default: a third of --slsqp-sample, at least 5")
    parser.add_argument("--attacks-sample", type=int, default=20,
                        help="inputs given to each Foolbox attack (0: skip; needs foolbox)")
    parser.add_argument("--attacks", default="deepfool,ddn,fmn,cw",
                        help="comma-separated names from fliplib.studies.attacks.ATTACKS")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file (JSON) for book/performance.ipynb")
    args = parser.parse_args(argv)
    settings = vars(args).copy()
    settings["output"] = str(args.output)
    settings["box"] = [-BOX, BOX]
    settings["attack_options"] = ATTACK_OPTIONS
    settings["slsqp_blas_threads"] = SLSQP_BLAS_THREADS
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    state = machine()

    runs = [("MNIST-size (Table A1)", args.inputs, args.slsqp_sample)]
    if not args.skip_cifar:
        runs.append(("CIFAR-size (Table A1)", args.cifar_inputs,
                     args.cifar_slsqp_sample if args.cifar_slsqp_sample is not None else max(5, args.slsqp_sample // 3)))
    frames, summaries = [], []
    for network, n_inputs, sample in runs:
        problems, summary = bench(network, n_inputs, sample, args.attacks_sample,
                                  [name for name in args.attacks.split(",") if name])
        frames.append(problems)
        summaries += summary
    problems = pd.concat(frames, ignore_index=True)
    summary = pd.DataFrame(summaries)
    print_summary(summary)
    state["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_atomic(args.output, {
        "created": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": settings,
        "machine": state,
        "summary": summary.to_dict(orient="records"),
        "problems": problems.to_dict(orient="records"),
    })
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
