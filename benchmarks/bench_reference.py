"""Is fliplib's answer the closest? Checked against a strong reference in higher dimensions.

Usage::

    .venv/bin/python benchmarks/bench_reference.py                 # the three networks below
    .venv/bin/python benchmarks/bench_reference.py --inputs 4 --cifar-inputs 6 --starts 8

In two dimensions ``bench_global.py`` searches the plane exhaustively. In 100 or 200 dimensions no
search is exhaustive, so the reference here is the best of many other attempts at each problem,
each judged by fliplib's own success rule (:func:`fliplib.studies.experiments.is_flip_point` on
:func:`fliplib.flip_evidence`):

- **SLSQP from many starts** (:func:`fliplib.baselines.slsqp_flip_point`, SciPy's SLSQP on eqs.
  1-5 with the analytic Jacobian in float64): from ``x``; from ``x`` plus random perturbations of
  lengths 0.25, 0.5 and 1 times the distance of fliplib's answer (or of the median answer where
  fliplib failed); and from training points that the network assigns to the target class,
  brought to the boundary by bisection on the segment from ``x`` to them
  (:func:`fliplib.rescue.first_crossing`), the nearest such points first. ``--starts`` of them
  per problem in all (20 by default: 1 + 12 + 7; fewer only where fewer than 7 of the 35
  nearest training points of the target class give a boundary point, the others' segments
  entering a third class first).
- **Foolbox's minimum-norm attacks** (DeepFool, DDN, FMN, C&W through
  :func:`fliplib.studies.attacks.minimum_norm_attack`), untargeted, one per input: the first
  boundary crossing on the segment from ``x`` to the attack's point bounds the distance to the
  closest flip point over all classes from above, so they check ``target="any"``.

fliplib is run as a user would: ``closest_flip_points(model, x, "all")`` and ``"any"``, the
defaults (homotopy, then the global search); and ``"all"`` once more given the same training
points as the reference (``witnesses=``), so that both search from the same data. A problem counts *reference closer* when the
reference's best flip point is more than 1% closer than fliplib's, and *missed* when fliplib
reports a failure where the reference found a flip point. The networks (``--networks``):

- ``mnist-random``: a Glorot-initialised Table A1 MNIST network (100 inputs, 10 classes, seed 0)
  at standard-normal inputs, as in ``bench_flip.py``;
- ``mnist-trained``: the same architecture trained for two epochs on the 100 Haar wavelet
  coefficients of the first 30,000 MNIST training images (chapter 3's NET1, trained briefly),
  at test images;
- ``geometry``: chapter 7's network (Table A1 CIFAR-10 boundaries, 200 coefficients, two classes)
  trained on standardised coefficients for ``--geometry-epochs`` epochs, the scaling then folded
  into the first layer (:func:`fliplib.fold_input_scaling`), at test images.

No box: chapters 3 and 7 solve without bounds. Results go to
``benchmarks/results/reference_benchmarks.json``; the data come from ``FLIPLIB_DATA`` (or a
download), as in the chapters.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fliplib  # noqa: E402
from bench_flip import SLSQP_BLAS_THREADS, Clock, foolbox_available, judged, machine, write_atomic  # noqa: E402
from fliplib.baselines import slsqp_flip_point  # noqa: E402
from fliplib.rescue import first_crossing  # noqa: E402
from fliplib.wavelets import WaveletFeatures  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "reference_benchmarks.json"
ROOT = Path(__file__).resolve().parent.parent
#: A reference counts as closer when its distance is below fliplib's by more than this share.
CLOSER = 0.01
#: Lengths of the random perturbations of x, relative to the distance of fliplib's answer.
PERTURBATIONS = (0.25, 0.5, 1.0)
#: Training points tried per start wanted from them (segments that cross a third class first give none).
WITNESS_TRIES = 5
#: fliplib's "all" given the training points as ``witnesses`` (the reference's third kind of start uses them too).
GIVEN = "fliplib given training points"
ATTACKS = ("deepfool", "ddn", "fmn", "cw")
KINDS = ("x", "perturbation", "training point")
ATTACK_OPTIONS = {"ddn": {"steps": 200}, "fmn": {"steps": 200}, "cw": {"binary_search_steps": 6, "steps": 300}}


def mnist_random(n_inputs: int, seed: int):
    model = fliplib.erf_network(fliplib.ARCHITECTURES["mnist"], seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_inputs, 100))
    # "training points" of each class for the witness starts: random inputs, labelled by the network
    pool = rng.normal(size=(5000, 100))
    return model, x, pool


def mnist_trained(n_inputs: int, seed: int, epochs: int = 2):
    data = fliplib.datasets.load_mnist()
    wavelets = WaveletFeatures(100).fit(data.x_train)
    x_train = wavelets.transform(data.x_train[:30000])
    model = fliplib.erf_network(fliplib.ARCHITECTURES["mnist"], seed=seed)
    fliplib.train(model, x_train, data.y_train[:30000], epochs=epochs, seed=seed)
    x_test = wavelets.transform(data.x_test[:n_inputs])
    return model, x_test, x_train


def geometry(n_inputs: int, seed: int, epochs: int = 10):
    data = fliplib.datasets.load_cifar10(dtype="float32")
    wavelets = WaveletFeatures(200, ndim=3).fit(data.x_train)
    x_train = wavelets.transform(data.x_train).astype(float)
    shift, scale = x_train.mean(axis=0), x_train.std(axis=0)
    model = fliplib.erf_network(fliplib.ARCHITECTURES["cifar10_boundaries"], sigma=2.0, dropout=0.5, seed=seed)
    fliplib.train(model, (x_train - shift) / scale, data.y_train, epochs=epochs, seed=seed)
    fliplib.fold_input_scaling(model, shift, scale)
    return model, wavelets.transform(data.x_test[:n_inputs]).astype(float), x_train


def slsqp_starts(params, x, source, target, d_fliplib, pool, pool_class, n_starts, rng):
    """The starts of one problem: x, perturbations of x, then boundary points towards the nearest
    pool points of the target class, ``n_starts`` in all (fewer where too few of the ``WITNESS_TRIES`` times as many nearest pool points give a
    boundary point).

    Returns the starts and what each one is.
    """
    n_perturb = min(len(PERTURBATIONS) * 4, n_starts - 1)
    lengths = np.resize(PERTURBATIONS, n_perturb) * d_fliplib
    u = rng.normal(size=(n_perturb, x.size))
    starts = [x[None], x + lengths[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True)]
    kinds = ["x"] + ["perturbation"] * n_perturb
    n_witness = n_starts - 1 - n_perturb
    candidates = np.flatnonzero(pool_class == target)
    if n_witness > 0 and candidates.size:
        # a segment that enters a third class first gives no start: try the next-nearest points
        nearest = candidates[np.argsort(np.linalg.norm(pool[candidates] - x, axis=1))[:WITNESS_TRIES * n_witness]]
        ends = pool[nearest]
        points, found = first_crossing(params, np.repeat(x[None], len(ends), axis=0), ends,
                                       np.full(len(ends), source), np.full(len(ends), target))
        points = points[found][:n_witness]
        starts.append(points)
        kinds += ["training point"] * len(points)
    return np.concatenate(starts), np.array(kinds)


def reference_all(name, model, x, res, pool, n_starts, seed):
    """SLSQP from ``n_starts`` starts per (input, target) problem; the best judged flip point."""
    params = fliplib.network_params(model)
    pool_class = np.argmax(np.asarray(model(pool.astype(np.float32), training=False)), axis=1)
    rng = np.random.default_rng(seed)
    typical = np.median(res.distance[res.success]) if res.success.any() else 1.0
    rows = []
    pairs = np.argwhere(res.status != -1)
    with threadpool_limits(limits=SLSQP_BLAS_THREADS), Clock() as clock:
        for i, j in tqdm(pairs, desc=f"SLSQP x {n_starts}, {name}", leave=False):
            src = int(res.source[i, j])
            d = res.distance[i, j] if res.success[i, j] else typical
            starts, kinds = slsqp_starts(params, x[i], src, int(j), d, pool, pool_class, n_starts, rng)
            points = np.array([slsqp_flip_point(model, x[i], src, int(j), x_start=s)["x"] for s in starts])
            ok = judged(model, np.repeat(x[i][None], len(points), axis=0), points,
                        np.full(len(points), src), np.full(len(points), int(j)))
            dist = np.where(ok, np.linalg.norm(points - x[i], axis=1), np.inf)
            best = {f"best from {kind}": float(dist[kinds == kind].min(initial=np.inf)) for kind in KINDS}
            rows.append({"network": name, "input": int(i), "source": src, "target": int(j),
                         "starts": len(starts), "reference": float(dist.min()), **best,
                         "fliplib": float(res.distance[i, j]), "fliplib_status": int(res.status[i, j])})
    return pd.DataFrame(rows), clock


def reference_any(name, model, x, best, attacks):
    """Foolbox's minimum-norm attacks, untargeted: the first crossing on the segment to each
    attack's point, the nearest over the attacks, against fliplib's ``"any"``."""
    from fliplib.studies.attacks import minimum_norm_attack

    params = fliplib.network_params(model)
    source = best.source
    reach = np.full(len(x), np.inf)
    who = np.full(len(x), "", dtype=object)
    # Foolbox needs one box: wide enough never to bind (three times the spread of the inputs)
    low, high = float(x.min()), float(x.max())
    lower, upper = low - (high - low), high + (high - low)
    for attack in attacks:
        found = minimum_norm_attack(model, x, source, attack=attack, lower=lower, upper=upper,
                                    **ATTACK_OPTIONS.get(attack, {}))
        point, hit, entered = first_crossing(params, x, found.x, source, np.full(len(x), -1), return_class=True)
        hit &= found.success
        if hit.any():  # judged like every other point: a flip point between source and class entered
            hit[hit] = judged(model, x[hit], point[hit], source[hit], entered[hit])
        d = np.where(hit, np.linalg.norm(point - x, axis=1), np.inf)
        who = np.where(d < reach, attack, who)
        reach = np.minimum(reach, d)
    return pd.DataFrame({"network": name, "input": np.arange(len(x)), "source": source,
                         "attacks": reach, "attack": who, "fliplib any": best.distance,
                         "fliplib any status": best.status})


def verdicts(frame: pd.DataFrame, ours: str, theirs: str) -> dict:
    found = np.isfinite(frame[theirs])
    missed = found & ~np.isfinite(frame[ours])
    closer = found & ~missed & (frame[theirs] < (1 - CLOSER) * frame[ours])
    ratio = frame[ours][found & np.isfinite(frame[ours])] / frame[theirs][found & np.isfinite(frame[ours])]
    return {"problems": len(frame), "reference found": int(found.sum()),
            "reference > 1% closer": int(closer.sum()), "share closer": float(closer.mean()),
            "fliplib missed": int(missed.sum()),
            "largest fliplib / reference": float(ratio.max()) if len(ratio) else np.nan}


NETWORKS = {"mnist-random": mnist_random, "mnist-trained": mnist_trained, "geometry": geometry}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--inputs", type=int, default=24, help="inputs per 10-class network (9 problems each)")
    parser.add_argument("--cifar-inputs", type=int, default=40, help="inputs of the two-class geometry network")
    parser.add_argument("--starts", type=int, default=20, help="SLSQP starts per problem")
    parser.add_argument("--geometry-epochs", type=int, default=10)
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="Foolbox attacks ('' skips them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.starts < 2:
        parser.error("--starts must be at least 2")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    state = machine()
    attacks = [a for a in args.attacks.split(",") if a] if foolbox_available() else []
    per_problem, per_input, summary = [], [], []
    unknown = set(args.networks.split(",")) - set(NETWORKS)
    if unknown:
        parser.error(f"unknown networks {sorted(unknown)}; choose from {list(NETWORKS)}")
    for name in args.networks.split(","):
        n = args.cifar_inputs if name == "geometry" else args.inputs
        kwargs = {"epochs": args.geometry_epochs} if name == "geometry" else {}
        model, x, pool = NETWORKS[name](n, args.seed, **kwargs)
        with Clock() as all_clock:
            res = fliplib.closest_flip_points(model, x, "all")
        with Clock() as given_clock:  # the same, also given the training points as witnesses
            res_given = fliplib.closest_flip_points(model, x, "all", witnesses=pool)
        with Clock() as any_clock:
            best = fliplib.closest_flip_points(model, x, "any")
        problems, slsqp_clock = reference_all(name, model, x, res, pool, args.starts, args.seed)
        problems[GIVEN] = res_given.distance[problems.input, problems.target]
        row = {"network": name, "inputs": n, **verdicts(problems, "fliplib", "reference"),
               "fliplib status 1": int(np.sum(res.status == 1)),
               **{f"{GIVEN}: {k}": v for k, v in verdicts(problems, GIVEN, "reference").items()},
               "CPU s fliplib all": all_clock.cpu, f"CPU s {GIVEN}": given_clock.cpu,
               "CPU s fliplib any": any_clock.cpu, "CPU s SLSQP": slsqp_clock.cpu}
        # "any" against the nearest of the SLSQP references over the targets, and the attacks
        nearest = problems.groupby("input").reference.min().reindex(range(n)).to_numpy()
        inputs = pd.DataFrame({"fliplib any": best.distance, "SLSQP best over targets": nearest})
        row |= {f"any vs SLSQP: {k}": v for k, v in verdicts(inputs, "fliplib any", "SLSQP best over targets").items()}
        if attacks:
            with Clock() as attack_clock:
                by_attack = reference_any(name, model, x, best, attacks)
            row |= {f"any vs attacks: {k}": v for k, v in verdicts(by_attack, "fliplib any", "attacks").items()}
            row["CPU s attacks"] = attack_clock.cpu
            per_input.append(by_attack)
        per_problem.append(problems)
        summary.append(row)
        print(pd.Series(row).to_string(), flush=True)
    state["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    settings = vars(args).copy()
    settings["output"] = str(args.output.resolve().relative_to(ROOT)) if args.output.resolve().is_relative_to(ROOT) \
        else args.output.name
    settings |= {"closer": CLOSER, "perturbations": PERTURBATIONS, "attack_options": ATTACK_OPTIONS}
    write_atomic(args.output, {
        "created": started, "command": " ".join(["python", "benchmarks/bench_reference.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": settings, "machine": state, "summary": summary,
        "problems": pd.concat(per_problem, ignore_index=True).to_dict(orient="records"),
        "inputs": pd.concat(per_input, ignore_index=True).to_dict(orient="records") if per_input else [],
    })
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
