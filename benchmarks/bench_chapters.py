"""Paper-scale CPU time of each chapter's main computation, measured at small sizes and extrapolated.

Usage::

    .venv/bin/python benchmarks/bench_chapters.py                      # chapters 3, 4, 5 and 7
    .venv/bin/python benchmarks/bench_chapters.py --quick --chapters 7  # a smoke run: tiny sizes
    .venv/bin/python benchmarks/bench_chapters.py --threads 1          # one TensorFlow/BLAS thread

Every chapter takes its sizes from its parameter cell; the committed values are the book's scale, and
the cell's comment gives the papers'. Chapters 1, 2 and 6 have no larger paper size. For
chapters 3, 4, 5 and 7 this script runs each stage of the chapter's main computation exactly as the
chapter calls it (the same :mod:`fliplib` calls, options, architecture and bounds) at three small sizes,
doubling, on a network trained briefly the way the chapter trains it (the one-epoch trainings on a
quarter, a half and all of the chapter's training set, whose times are themselves a stage; chapter 7
trains ``--extra-epochs`` further epochs). It fits CPU seconds = a + b n by least squares, where n
counts the stage's items (images, records, lines or image-epochs), and extrapolates to the book's
sizes (read from the chapter's parameter cell) and to the papers' sizes as

    CPU seconds = calls x a + b x n,

with ``calls`` the number of separate calls the chapter makes at that scale (a is the cost of one call
beyond its items: tracing, set-up). Every stage is called once on the smallest size before it is
timed, so that TensorFlow's tracing stays outside the timings. CPU time is user + system time of all
threads of the process (:func:`time.process_time`), the measure the chapters' own "Time" sections use.

A brief training makes the flip-point problems representative (a random network's are not), but the
networks are not the chapters' fully trained ones: the per-item times are estimates of the same kind
of problems, not of the very same problems. Where the paper's size depends on the chapter's trained
network (chapter 7's correctly classified test ships), the briefly trained network's count is used.

Results go to ``benchmarks/results/chapter_benchmarks.json`` (every size and time, the fits, the
extrapolations) and ``benchmarks/results/chapter_times.md``, the table that the book's teaching page
(book/teaching.md, "Book scale and paper scale") includes. The data come from ``FLIPLIB_DATA`` (or a
download), as in the chapters.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fliplib  # noqa: E402
from bench_flip import Clock, machine, write_atomic  # noqa: E402
from fliplib.mixed import mixed_flip_points  # noqa: E402
from fliplib.wavelets import WaveletFeatures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
RESULTS = Path(__file__).resolve().parent / "results" / "chapter_benchmarks.json"
TABLE = Path(__file__).resolve().parent / "results" / "chapter_times.md"
NOTEBOOKS = {3: "03_mnist", 4: "04_cifar10", 5: "05_adult", 7: "07_decision_boundaries"}
#: Chapters with no paper size larger than the book's, and why.
NO_PAPER_SCALE = {
    1: "toy problems: the parameter cell's values are the whole chapter",
    2: "scikit-learn's 8 x 8 digits; the paper's MNIST scale is chapter 3's",
    6: "the paper trains on one split, as split 0 does",
}
#: Chapter 7's paper sizes, from its parameter cell's comment (the decision-boundaries paper).
PAPER_7 = {"N_FLIP": 2000, "N_LINE_PAIRS": 1000}
#: Items per timed call of each stage kind: three sizes, doubling (``--quick``: 2, 3 and 4).
SIZES = {
    "mnist all": (8, 16, 32),
    "mnist any": (4, 8, 16),
    "cifar default": (4, 8, 16),
    "cifar book": (16, 32, 64),
    "adult": (16, 32, 64),
    "geometry flips": (4, 8, 16),
    "geometry lines": (32, 64, 128),
    "geometry ships": (6, 8, 12),  # points; lines between all pairs: 15, 28, 66
}
QUICK = {name: (2, 3, 4) for name in SIZES}
#: Shares of the chapter's training set in the three timed one-epoch trainings.
TRAIN_SHARES = (0.25, 0.5, 1.0)
#: ``--quick``: the timed trainings on a twentieth of those shares.
QUICK_RUN = False


@dataclass
class Stage:
    """One stage of one chapter: the measurements, the fit and the two extrapolations."""

    chapter: int
    stage: str
    unit: str
    sizes: list[int]
    cpu_seconds: list[float]
    book_items: float | None
    book_calls: int
    paper_items: float | None
    paper_calls: int
    note: str = ""
    fit: dict = field(default_factory=dict)
    book_cpu_seconds: float | None = None
    paper_cpu_hours: float | None = None
    #: The check: items, calls and CPU seconds of one run at (about) the book's size, and the line's value there.
    check_items: int | None = None
    check_calls: int = 1
    check_cpu_seconds: float | None = None
    check_fitted_seconds: float | None = None

    def extrapolate(self) -> "Stage":
        """Fit CPU seconds = a + b n by least squares and evaluate it at the two scales (and at the check).

        Returns
        -------
        Stage
            This stage, with ``fit``, ``book_cpu_seconds``, ``paper_cpu_hours`` and ``check_fitted_seconds``.
        """
        b, a = np.polyfit(np.asarray(self.sizes, float), np.asarray(self.cpu_seconds, float), 1)
        self.fit = {"a": float(a), "b": float(b)}
        if self.book_items is not None:
            self.book_cpu_seconds = float(self.book_calls * a + b * self.book_items)
        if self.paper_items is not None:
            self.paper_cpu_hours = float((self.paper_calls * a + b * self.paper_items) / 3600)
        if self.check_items is not None:
            self.check_fitted_seconds = float(self.check_calls * a + b * self.check_items)
        return self

    def check(self, run, items: int, calls: int = 1) -> None:
        """Time ``run()``, the stage at (about) the book's size, for comparison with the fitted line.

        Parameters
        ----------
        run : callable
            The stage at that size, without arguments.
        items, calls : int
            Its items, and the separate calls it makes.
        """
        with Clock() as clock:
            run()
        self.check_items, self.check_calls, self.check_cpu_seconds = int(items), calls, clock.cpu


def parameters(chapter: int, paper_cell: bool = False) -> dict:
    """The values the chapter's parameter cell sets (and, for chapter 3, its ``FULL_SIZE`` cell).

    Parameters
    ----------
    chapter : int
        The chapter's number (a key of ``NOTEBOOKS``).
    paper_cell : bool
        Also run the cell after the parameter cell with ``FULL_SIZE = True`` (chapter 3 only).

    Returns
    -------
    dict
        Every name the cell(s) assign.
    """
    cells = json.loads((BOOK / f"{NOTEBOOKS[chapter]}.ipynb").read_text(encoding="utf-8"))["cells"]
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    values: dict = {}
    exec(code[1], {}, values)  # the parameter cell: assignments of literals only
    if paper_cell:
        values["FULL_SIZE"] = True
        exec(code[2], {}, values)
    return values


def measure(run, sizes, desc: str) -> list[float]:
    """CPU seconds of ``run(n)`` for each n, after one untimed call at the smallest size.

    Parameters
    ----------
    run : callable
        ``run(n)`` runs the stage on its first ``n`` items.
    sizes : sequence of int
        The sizes to time.
    desc : str
        The progress bar's label.

    Returns
    -------
    list of float
        CPU seconds (user + system, all threads) per size.
    """
    run(sizes[0])
    return time_each(run, sizes, desc)


def time_each(run, sizes, desc: str) -> list[float]:
    """CPU seconds of ``run(n)`` for each n in ``sizes``, under a progress bar labelled ``desc``."""
    times = []
    for n in tqdm(sizes, desc=desc, leave=False):
        with Clock() as clock:
            run(n)
        times.append(clock.cpu)
    return times


def timed_training(train_epoch, n_train: int, desc: str) -> tuple[list[int], list[float]]:
    """One-epoch trainings on the first quarter, half and all of ``n_train`` points: the brief training, timed.

    Parameters
    ----------
    train_epoch : callable
        ``train_epoch(n)`` trains the chapter's network for one epoch on its first ``n`` training points.
    n_train : int
        The chapter's training points.
    desc : str
        The progress bar's label.

    Returns
    -------
    sizes : list of int
        Training points per timed epoch.
    cpu_seconds : list of float
        CPU seconds of each.
    """
    sizes = [int(round(share * n_train)) for share in TRAIN_SHARES]
    if QUICK_RUN:
        sizes = [max(1, n // 20) for n in sizes]
    return sizes, time_each(train_epoch, sizes, desc)


def chapter_3(sizes: dict, seed: int, check: bool) -> list[Stage]:
    """MNIST: the closest flip points toward every other class, and the pool's closest over all.

    Parameters
    ----------
    sizes : dict
        Items per timed call of each stage kind (``SIZES`` or ``QUICK``).
    seed : int
        Seed of the network, the training and the samples.
    check : bool
        Also run one stage at the book's size (the check of the fitted line).

    Returns
    -------
    list of Stage
        The chapter's stages, measured, not yet fitted.
    """
    book, paper = parameters(3), parameters(3, paper_cell=True)
    mnist = fliplib.datasets.load_mnist()
    wavelets = WaveletFeatures(book["N_COEFFICIENTS"]).fit(mnist.x_train)
    x_train, y_train = wavelets.transform(mnist.x_train), mnist.y_train.astype(int)
    half = np.arange(len(x_train) // 2)  # NET1's half
    net = fliplib.erf_network(fliplib.ARCHITECTURES["mnist"], seed=seed)

    def epoch(n):
        fliplib.train(net, x_train[half[:n]], y_train[half[:n]], epochs=1, learning_rate=1e-3, seed=seed)

    n_half = len(half)
    train_sizes, train_times = timed_training(epoch, n_half, "chapter 3: training")
    stages = [Stage(
        3, "train NET1 and NET2", "image-epoch", train_sizes, train_times,
        book_items=2 * n_half * sum(book["EPOCHS"]), book_calls=4,
        paper_items=2 * n_half * sum(paper["EPOCHS"]), paper_calls=4,
        note=f"epochs {tuple(book['EPOCHS'])} (book), {tuple(paper['EPOCHS'])} (paper)"),
        Stage(
        3, "train on all 60,000 images", "image-epoch", train_sizes, train_times,
        book_items=2 * book["N_SYNTHETIC_SEEDS"] * len(x_train) * sum(book["FULL_EPOCHS"]),
        book_calls=4 * book["N_SYNTHETIC_SEEDS"],
        paper_items=2 * paper["N_SYNTHETIC_SEEDS"] * len(x_train) * sum(paper["FULL_EPOCHS"]),
        paper_calls=4 * paper["N_SYNTHETIC_SEEDS"],
        note=f"{2 * paper['N_SYNTHETIC_SEEDS']} trainings, epochs {tuple(book['FULL_EPOCHS'])} (book), "
             f"{tuple(paper['FULL_EPOCHS'])} (paper); the synthetic points not counted")]
    # both halves: the paper solves every training image for both networks (seen and unseen half)
    order = np.random.default_rng(seed).permutation(len(x_train))
    solver = book["SOLVER"]
    cpu = measure(lambda n: fliplib.closest_flip_points(net, x_train[order[:n]], "all", **solver),
                  sizes["mnist all"], "chapter 3: flip points, all")
    book_images = 4 * book["N_PER_HALF"] + 2 * book["N_MISTAKES"]
    stages.append(Stage(
        3, "flip points toward the 9 other classes", "image", list(sizes["mnist all"]), cpu,
        book_items=book_images, book_calls=4, paper_items=2 * len(x_train), paper_calls=4,
        note=f"SOLVER = {solver}; every training image, for NET1 and for NET2"))
    pool = np.sort(np.random.default_rng(seed + 1).permutation(half)[:max(sizes["mnist any"])])
    cpu = measure(lambda n: fliplib.closest_flip_points(net, x_train[pool[:n]], "any", options=dict(gap_tol=1e-4)),
                  sizes["mnist any"], "chapter 3: pool, any")
    stages.append(Stage(
        3, "pool's closest flip points (any class)", "image", list(sizes["mnist any"]), cpu,
        book_items=book["N_POOL"], book_calls=1, paper_items=paper["N_POOL"], paper_calls=1,
        note="default global search; the influence trainings on subsets are not timed"))
    if check:  # one network's book-scale training (train_erf: two calls), the net trained on
        def train_net1():
            for epochs, rate in zip(book["EPOCHS"], (1e-3, 1e-4)):
                fliplib.train(net, x_train[half], y_train[half], epochs=epochs, learning_rate=rate, seed=seed)

        stages[0].check(train_net1, n_half * sum(book["EPOCHS"]), calls=2)
    return stages


def chapter_4(sizes: dict, seed: int, check: bool) -> list[Stage]:
    """CIFAR-10 airplanes and ships: the flip points in wavelet space.

    The arguments and the result are those of :func:`chapter_3`.
    """
    book = parameters(4)
    cifar = fliplib.datasets.load_cifar10(dtype="float32")
    images_train = np.concatenate([cifar.x_train, cifar.x_train[:, :, ::-1]])  # with mirror images
    y_train = np.concatenate([cifar.y_train, cifar.y_train])
    wavelets = WaveletFeatures(book["N_COEFFICIENTS"]).fit(images_train)
    center = wavelets.transform(images_train).mean(axis=0)
    f_train, f_test = wavelets.transform(images_train) - center, wavelets.transform(cifar.x_test) - center
    model = fliplib.erf_network(fliplib.ARCHITECTURES["cifar10"], seed=seed)
    shuffled = np.random.default_rng(seed).permutation(len(y_train))

    def epoch(n):
        fliplib.train(model, f_train[shuffled[:n]], y_train[shuffled[:n]], epochs=1,
                      learning_rate=book["LEARNING_RATES"][0], batch_size=book["BATCH_SIZE"], seed=seed)

    train_sizes, train_times = timed_training(epoch, len(y_train), "chapter 4: training")
    stages = [Stage(
        4, "training", "image-epoch", train_sizes, train_times,
        book_items=len(y_train) * sum(book["EPOCHS"]), book_calls=len(book["EPOCHS"]),
        paper_items=None, paper_calls=0,
        note=f"epochs {tuple(book['EPOCHS'])} (book); the paper does not state its epochs")]
    n_book = book["N_TRAIN_FLIPS"] + len(f_test)
    n_most = max(max(sizes["cifar default"]), max(sizes["cifar book"]), n_book if check else 0)
    x = f_train[shuffled[:n_most]]
    target = 1 - fliplib.predict_proba(model, x).argmax(axis=1)

    def solve(n, solver):
        """The chapter's ``solve``: SOLVER's flip points, the failures solved again with the default."""
        result = fliplib.closest_flip_points(model, x[:n], target[:n], **solver)
        failed = np.flatnonzero(~result.success)
        if failed.size:
            again = fliplib.closest_flip_points(model, x[:n][failed], target[:n][failed])
            result = result.keep_closer(failed, again)
        return result

    for key, solver, label in (("cifar book", book["SOLVER"], "book's SOLVER"), ("cifar default", {}, "SOLVER = {}")):
        cpu = measure(lambda n: solve(n, solver), sizes[key], f"chapter 4: flip points, {label}")
        stages.append(Stage(
            4, f"flip points in wavelet space, {label}", "image", list(sizes[key]), cpu,
            book_items=n_book, book_calls=2,
            paper_items=len(y_train) + len(f_test) if not solver else None, paper_calls=2,
            note=(f"the book's solver {solver}, its failures solved again with the default" if solver else
                  "the paper's scale: the default solver, every training and test image; "
                  "the pixel-space stage (the flip points outside [0, 1]) is not timed")))
    if check:  # the book's solver on as many training images as the chapter solves in both sets
        stages[1].check(lambda: solve(n_book, book["SOLVER"]), n_book)
    return stages


def chapter_5(sizes: dict, seed: int, check: bool) -> list[Stage]:
    """Adult income: the mixed-variable flip points of the samples.

    The arguments and the result are those of :func:`chapter_3`.
    """
    book = parameters(5)
    adult = fliplib.datasets.load_adult()
    net = fliplib.erf_network([adult.n_features] + fliplib.ARCHITECTURES["adult"][1:], seed=seed)
    one_hot = np.concatenate(list(adult.groups.values()))
    continuous = np.setdiff1d(np.arange(adult.n_features), one_hot)
    shift, scale = np.zeros(adult.n_features), np.ones(adult.n_features)
    shift[continuous] = adult.x_train[:, continuous].mean(axis=0)
    scale[continuous] = adult.x_train[:, continuous].std(axis=0)
    shuffled = np.random.default_rng(seed).permutation(len(adult.x_train))

    def epoch(n):
        rows = shuffled[:n]
        fliplib.train(net, (adult.x_train[rows] - shift) / scale, adult.y_train[rows], epochs=1,
                      batch_size=book["BATCH_SIZE"], learning_rate=1e-3, seed=seed)

    n_train = len(adult.x_train)
    train_sizes, train_times = timed_training(epoch, n_train, "chapter 5: training")
    stages = [Stage(
        5, "training", "record-epoch", train_sizes, train_times,
        book_items=n_train * sum(book["EPOCHS"]), book_calls=len(book["EPOCHS"]),
        paper_items=n_train * sum(book["EPOCHS"]), paper_calls=len(book["EPOCHS"]),
        note=f"epochs {tuple(book['EPOCHS'])} at both scales")]
    fliplib.fold_input_scaling(net, shift, scale)
    box = dict(groups=adult.groups, lower=adult.lower, upper=adult.upper)
    x = adult.x_train[shuffled]
    n_book = book["N_PATTERN"] + book["N_REVERSE"] + book["N_MISTAKES"] + book["N_DICE"]
    target = 1 - fliplib.predict_proba(net, x[:max(max(sizes["adult"]), n_book)]).argmax(axis=1)
    paper_search = {**book["SEARCH"], "max_solved": None}
    for search, label in ((book["SEARCH"], "book's SEARCH"), (paper_search, "max_solved=None")):
        cpu = measure(lambda n: mixed_flip_points(net, x[:n], target[:n], **box, **search),
                      sizes["adult"], f"chapter 5: flip points, {label}")
        paper = search is paper_search
        stages.append(Stage(
            5, f"mixed flip points of the samples, {label}", "record", list(sizes["adult"]), cpu,
            book_items=n_book, book_calls=4, paper_items=n_train + len(adult.x_test) if paper else None,
            paper_calls=4,
            note=("the paper's scale: every training record (the three samples) and every test record "
                  "(N_DICE); the country stages are not timed" if paper else f"SEARCH = {search}")))
    if check:  # the book's search on as many training records as the chapter's four samples hold
        stages[1].check(lambda: mixed_flip_points(net, x[:n_book], target[:n_book], **box, **book["SEARCH"]), n_book)
    return stages


def chapter_7(sizes: dict, seed: int, check: bool, extra_epochs: int) -> list[Stage]:
    """Geometry of decision boundaries: flip points, the box, line scans and the ships' lines.

    The arguments and the result are those of :func:`chapter_3`, and ``extra_epochs`` the epochs
    of training after the three timed ones.
    """
    from fliplib import boundary

    book = parameters(7)
    data = fliplib.datasets.load_cifar10(dtype="float32")
    wavelets = WaveletFeatures(book["N_COEFFICIENTS"], ndim=3).fit(data.x_train)
    x_train, x_test = wavelets.transform(data.x_train), wavelets.transform(data.x_test)
    model = fliplib.erf_network(fliplib.ARCHITECTURES["cifar10_boundaries"], sigma=book["SIGMA"], dropout=0.5,
                                seed=seed)
    shift, scale = x_train.mean(axis=0).astype(float), x_train.std(axis=0).astype(float)
    # the training images and their mirror images (axis 2 is the width), as the chapter trains
    u_fit = (np.concatenate([x_train, wavelets.transform(data.x_train[:, :, ::-1])]) - shift) / scale
    y_fit = np.concatenate([data.y_train, data.y_train])
    shuffled = np.random.default_rng(seed).permutation(len(y_fit))
    rate = book["LEARNING_RATE"]

    def epoch(n):
        fliplib.train(model, u_fit[shuffled[:n]], y_fit[shuffled[:n]], epochs=1, learning_rate=rate, seed=seed)

    train_sizes, train_times = timed_training(epoch, len(y_fit), "chapter 7: training")
    if extra_epochs:
        fliplib.train(model, u_fit, y_fit, epochs=extra_epochs, learning_rate=rate, seed=seed)
    fliplib.fold_input_scaling(model, shift, scale)
    stages = [Stage(
        7, "training", "image-epoch", train_sizes, train_times,
        book_items=len(y_fit) * book["EPOCHS"], book_calls=1,
        paper_items=len(y_fit) * book["EPOCHS"], paper_calls=1,
        note=f"{book['EPOCHS']} epochs of {len(y_fit):,} images (with mirror images) at both scales "
             "(the paper does not state its epochs)")]
    predicted = fliplib.predict_proba(model, x_test).argmax(axis=1)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x_train), size=(2, 500))
    t = rng.uniform(size=(500, 1))
    probe = np.concatenate([x_train[:1500], (1 - t) * x_train[i] + t * x_train[j]])
    lipschitz = book["LIPSCHITZ_SAFETY"] * np.linalg.norm(boundary.margin_gradient(model, probe)[1], axis=1).max()

    cpu = measure(lambda n: fliplib.closest_flip_points(model, x_test[:n], 1 - predicted[:n]),
                  sizes["geometry flips"], "chapter 7: flip points")
    stages.append(Stage(
        7, "closest flip points", "image", list(sizes["geometry flips"]), cpu,
        book_items=book["N_FLIP"], book_calls=1, paper_items=PAPER_7["N_FLIP"], paper_calls=1,
        note="the default solver, no bounds"))
    cpu = measure(lambda n: fliplib.closest_flip_points(model, x_test[:n], 1 - predicted[:n], lower=0.0,
                                                        upper=np.sqrt(8.0)),
                  sizes["geometry flips"], "chapter 7: flip points in the box")
    stages.append(Stage(
        7, "closest flip points in the box", "image", list(sizes["geometry flips"]), cpu,
        book_items=book["N_BOX"], book_calls=1, paper_items=PAPER_7["N_FLIP"], paper_calls=1,
        note="N_BOX = N_FLIP at the paper's scale"))
    a_index = rng.integers(0, len(x_test), size=max(sizes["geometry lines"]))
    b_index = (a_index + rng.integers(1, len(x_test), size=a_index.size)) % len(x_test)
    cpu = measure(lambda n: boundary.scan_segments(model, x_test[a_index[:n]], x_test[b_index[:n]],
                                                   lipschitz=lipschitz, target=None),
                  sizes["geometry lines"], "chapter 7: line scans")
    stages.append(Stage(
        7, "lines between random pairs", "line", list(sizes["geometry lines"]), cpu,
        book_items=2 * book["N_LINE_PAIRS"], book_calls=2, paper_items=2 * PAPER_7["N_LINE_PAIRS"], paper_calls=2,
        note="training and test pairs; timed on test pairs"))
    ships = np.flatnonzero((predicted == data.y_test) & (data.y_test == 1))
    drawn = rng.permutation(ships)
    cpu = measure(lambda m: boundary.line_adjacency(model, x_test[drawn[:m]], cls=1, lipschitz=lipschitz),
                  sizes["geometry ships"], "chapter 7: ships' lines")
    n_ships = len(ships)
    stages.append(Stage(
        7, "lines between ships", "line", [m * (m - 1) // 2 for m in sizes["geometry ships"]], cpu,
        book_items=book["N_SHIPS"] * (book["N_SHIPS"] - 1) // 2, book_calls=1,
        paper_items=n_ships * (n_ships - 1) // 2, paper_calls=1,
        note=f"all {n_ships} correctly classified test ships (of the briefly trained network), every pair; "
             "the attacks (N_ATTACK) are not timed"))
    if check:  # the book's N_SHIPS ships, every pair
        m = book["N_SHIPS"]
        stages[-1].check(lambda: boundary.line_adjacency(model, x_test[drawn[:m]], cls=1, lipschitz=lipschitz),
                         m * (m - 1) // 2)
    return stages


def hours(value: float | None) -> str:
    """CPU hours for the table: two significant digits, or whole hours from 10 on."""
    if value is None:
        return "-"
    return f"{value:.2g}" if value < 10 else f"{value:,.0f}"


def per_item(seconds: float) -> str:
    """CPU seconds per item for the table: two significant digits."""
    return f"{seconds:.2g}" if seconds < 100 else f"{seconds:,.0f}"


def markdown(stages: list[Stage], created: str, state: dict, options: list[str]) -> str:
    """The table that book/teaching.md includes.

    Parameters
    ----------
    stages : list of Stage
        Every stage, fitted.
    created : str
        The run's start (ISO 8601, UTC).
    state : dict
        :func:`bench_flip.machine` at the start.
    options : list of str
        The command-line options of the run.

    Returns
    -------
    str
        Markdown: a line on the run, the table of the stages and the table of the checks.
    """
    when = created.replace("T", " ").split("+")[0]
    how = f" with the options `{' '.join(options)}`" if options else ""
    lines = [
        f"Measured on {when} UTC by `make bench-chapters` (`benchmarks/bench_chapters.py`{how}) on a machine with "
        f"{state['cpus']} CPU cores, load average {state['load_average_1min_at_start']:.1f} at the start: CPU seconds "
        "at three small sizes per stage, a straight line fitted through them, and that line evaluated at the "
        "book's and the paper's sizes.",
        "",
        "| chapter | stage | paper-scale size | CPU s per item | paper scale, CPU hours | book scale, CPU s "
        "(extrapolated) | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    rows = [(chapter, f"| {chapter} | - | no larger paper size | - | - | - | {why} |")
            for chapter, why in NO_PAPER_SCALE.items()]
    for s in stages:
        size = f"{s.paper_items:,.0f} {s.unit}s" if s.paper_items is not None else "-"
        book = f"{s.book_cpu_seconds:,.0f}" if s.book_cpu_seconds is not None else "-"
        rows.append((s.chapter, f"| {s.chapter} | {s.stage} | {size} | {per_item(s.fit['b'])} "
                                f"| {hours(s.paper_cpu_hours)} | {book} | {s.note} |"))
    lines += [row for _, row in sorted(rows, key=lambda r: r[0])]
    checked = [s for s in stages if s.check_cpu_seconds is not None]
    if checked:
        lines += [
            "",
            "The check of the line: one stage per chapter run once more at (about) the book's size, in the same "
            "run, on the same briefly trained network.",
            "",
            "| chapter | stage | items | measured CPU s | the line's CPU s | line / measured |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for s in checked:
            lines.append(f"| {s.chapter} | {s.stage} | {s.check_items:,} {s.unit}s | {s.check_cpu_seconds:,.0f} "
                         f"| {s.check_fitted_seconds:,.0f} | {s.check_fitted_seconds / s.check_cpu_seconds:.2f} |")
    return "\n".join(lines) + "\n"


def set_threads(threads: int) -> None:
    """One setting for TensorFlow's thread pools (0: TensorFlow's default)."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", default=",".join(str(c) for c in NOTEBOOKS), help="comma-separated: 3,4,5,7")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (2, 3, 4 items): a smoke run")
    parser.add_argument("--extra-epochs", type=int, default=8,
                        help="chapter 7: epochs after the three timed ones (the chapter trains 60)")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow's intra- and inter-op threads and BLAS threads (0: the defaults)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the checks of the line: one stage per chapter at the book's size (off with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE, help="the Markdown table for book/teaching.md")
    args = parser.parse_args(argv)
    chapters = [int(c) for c in args.chapters.split(",") if c]
    unknown = set(chapters) - set(NOTEBOOKS)
    if unknown:
        parser.error(f"no paper scale to measure for chapters {sorted(unknown)}; choose from {list(NOTEBOOKS)}")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    state = machine()
    set_threads(args.threads)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the timed trainings retrace, as in chapter 3
    for chapter, why in NO_PAPER_SCALE.items():
        print(f"chapter {chapter}: {why}; nothing to extrapolate")
    sizes = QUICK if args.quick else SIZES
    global QUICK_RUN
    QUICK_RUN = args.quick
    runners = {3: chapter_3, 4: chapter_4, 5: chapter_5,
               7: lambda *a: chapter_7(*a, extra_epochs=1 if args.quick else args.extra_epochs)}
    stages = []
    with threadpool_limits(limits=args.threads or None), Clock() as total:
        for chapter in tqdm(chapters, desc="chapters"):
            for stage in runners[chapter](sizes, args.seed, not (args.quick or args.no_check)):
                stages.append(stage.extrapolate())
                print(f"chapter {chapter}, {stage.stage}: {stage.fit['b']:.3g} CPU s per {stage.unit}, "
                      f"book scale {stage.book_cpu_seconds or float('nan'):.0f} CPU s, "
                      f"paper scale {hours(stage.paper_cpu_hours)} CPU hours", flush=True)
    state["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    settings = vars(args).copy() | {"sizes": sizes, "train_shares": TRAIN_SHARES, "paper_7": PAPER_7}
    for key in ("output", "table"):
        path = getattr(args, key).resolve()
        settings[key] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    write_atomic(args.output, {
        "created": started,
        "command": " ".join(["python", "benchmarks/bench_chapters.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": settings, "machine": state, "wall_seconds": total.wall, "cpu_seconds": total.cpu,
        "no_paper_scale": NO_PAPER_SCALE, "stages": [asdict(s) for s in stages],
    })
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(markdown(stages, started, state, sys.argv[1:] if argv is None else argv), encoding="utf-8")
    print(f"{total.wall / 60:.1f} min wall, {total.cpu / 60:.1f} min CPU")
    print(f"results written to {args.output} and {args.table}")


if __name__ == "__main__":
    main()
