"""The book's run paths outside this project's own environment, checked from the checkout.

On Colab or Binder a chapter starts with its set-up cell (the first code cell of every
notebook, see ``tests/test_notebooks.py``), which installs ``fliplib`` with the book's
extras from the repository, and TensorFlow (the ``tf`` extra) only when none is installed.
The repository's published address cannot be used before the code is published, so this
script runs that very cell with its ``source`` pointed at the local checkout instead, in fresh
virtual environments that hold nothing but IPython (a notebook kernel's shell) before it:

``fresh``
    A machine without TensorFlow (a plain Jupyter, or Binder before ``environment.yml``): the
    set-up cell must install ``fliplib[book,tf]``, then every chapter's first code cells up to
    and including its imports must run.
``colab``
    A machine whose TensorFlow is already installed, as on Colab: the set-up cell must install
    ``fliplib[book]`` and leave that TensorFlow alone (no second TensorFlow distribution, the
    same version), then the same cells must run.

Each chapter runs in its own IPython process (``InteractiveShell.run_cell``, which expands
``{extras}`` in the ``%pip`` line as a notebook does), so that no chapter's imports help
another's. The first chapter's process performs the install; the others find ``fliplib``
installed and the cell only imports it. Timings are printed per step.

Usage::

    .venv/bin/python tests/run_paths.py [--path fresh|colab|all] [--keep DIR]

``make run-path-test`` runs both paths. It needs the package index (the pip cache makes a
repeated run fast) and ``FLIPLIB_DATA`` for the chapters whose imports cell loads data.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PUBLISHED_SOURCE = 'source = "git+https://github.com/flip-points/flip-points"'
PATHS = ("fresh", "colab")
# What Colab has before the set-up cell runs: its own TensorFlow. The CPU wheel stands in for
# Colab's GPU build (the same package for pip's purposes, and a tenth of the download).
COLAB_TENSORFLOW = "tensorflow-cpu>=2.16"

# Run inside the fresh environment: the cells given as a JSON list, one after the other, in
# one IPython shell; stop at the first that fails.
DRIVER = """\
import json, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
for number, source in enumerate(json.load(open(sys.argv[1], encoding="utf-8")), 1):
    result = shell.run_cell(source, store_history=True)
    if not result.success:
        print(f"code cell {number} failed", file=sys.stderr)
        sys.exit(1)
"""


def notebooks() -> list[Path]:
    """The book's notebooks, checkpoints excluded, sorted."""
    return sorted(p for p in BOOK.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def has_import(source: str) -> bool:
    """Whether a code cell has an ``import`` or ``from ... import`` line at its top level."""
    return any(
        line.startswith("import ") or (line.startswith("from ") and " import " in line)
        for line in source.splitlines()
    )


def opening_cells(path: Path) -> list[str]:
    """A notebook's set-up cell and the code cells after it up to its first imports cell.

    Those are the cells a reader runs before any of the chapter's own work: the set-up cell,
    the parameter cell(s) and the cell with the chapter's imports.
    """
    notebook = nbformat.read(path, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    if not code:
        raise ValueError(f"{path.name} has no code cells")
    for index, source in enumerate(code[1:], start=1):
        if has_import(source):
            return code[: index + 1]
    raise ValueError(f"{path.name}: no code cell after the set-up cell imports anything")


def local_setup_cell(source: str, checkout: Path) -> str:
    """The set-up cell with its install source pointed at ``checkout`` (a ``file://`` URL)."""
    if PUBLISHED_SOURCE not in source:
        raise ValueError(f"the set-up cell does not contain {PUBLISHED_SOURCE!r}")
    return source.replace(PUBLISHED_SOURCE, f'source = "{checkout.as_uri()}"')


def copy_checkout(destination: Path) -> Path:
    """The files pip builds fliplib from, copied so that the build leaves the checkout clean."""
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)
    shutil.copytree(ROOT / "fliplib", destination / "fliplib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def run(command: list[str], **kwargs) -> float:
    """Run ``command`` (echoed), fail loudly on a non-zero exit; the seconds it took."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)
    return time.perf_counter() - start


def normalised(name: str) -> str:
    """A distribution name as pip compares them (``TensorFlow_CPU`` -> ``tensorflow-cpu``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions(python: Path) -> dict[str, str]:
    """Installed distributions of an environment, normalised name -> version."""
    listing = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                             check=True, capture_output=True, text=True).stdout
    return {normalised(item["name"]): item["version"] for item in json.loads(listing)}


def tensorflows(installed: dict[str, str]) -> dict[str, str]:
    return {name: version for name, version in installed.items()
            if name in {"tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-intel"}}


def check_path(kind: str, work: Path) -> dict[str, float]:
    """Create the environment of one run path and run every chapter's opening cells in it."""
    timings: dict[str, float] = {}
    env_dir = work / f"venv-{kind}"
    checkout = copy_checkout(work / f"checkout-{kind}")
    timings["create venv + IPython"] = run([sys.executable, "-m", "venv", str(env_dir)])
    python = env_dir / "bin" / "python"
    timings["create venv + IPython"] += run(
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", "ipython"])
    if kind == "colab":
        timings["preinstalled TensorFlow"] = run(
            [str(python), "-m", "pip", "install", "--quiet", COLAB_TENSORFLOW])
    before = tensorflows(distributions(python))
    if kind == "fresh" and before:
        raise AssertionError(f"the fresh environment already has TensorFlow: {before}")

    driver = work / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(env_dir)
    failures = []
    for number, path in enumerate(notebooks()):
        cells = opening_cells(path)
        cells[0] = local_setup_cell(cells[0], checkout)
        cells_file = work / f"{kind}-{path.stem}.json"
        cells_file.write_text(json.dumps(cells), encoding="utf-8")
        label = ("install + " if number == 0 else "") + f"{path.name} ({len(cells)} cells)"
        try:
            # Run from book/, as the book does, and never from the checkout's root, where
            # `import fliplib` would find the source tree rather than the installed package.
            timings[label] = run([str(python), str(driver), str(cells_file)], cwd=BOOK, env=env)
        except subprocess.CalledProcessError:
            failures.append(path.name)
            timings[label] = float("nan")
    after = distributions(python)
    if "fliplib" not in after:
        failures.append("the set-up cell did not install fliplib")
    origin = subprocess.run(
        [str(python), "-c", "import fliplib; print(fliplib.__file__)"],
        cwd=work, capture_output=True, text=True, env=env).stdout.strip()
    if not origin.startswith(str(env_dir)):
        failures.append(f"fliplib is imported from {origin or '?'}, not from the environment")
    if kind == "colab" and tensorflows(after) != before:
        failures.append(f"the set-up cell changed TensorFlow: {before} -> {tensorflows(after)}")
    if kind == "fresh" and not tensorflows(after):
        failures.append("the set-up cell installed no TensorFlow on a machine without one")
    report(kind, timings)
    if failures:
        raise SystemExit(f"run path {kind!r} failed: " + "; ".join(failures))
    return timings


def report(kind: str, timings: dict[str, float]) -> None:
    print(f"== run path {kind!r}: {sum(timings.values()):.0f} s in its steps")
    for step, seconds in timings.items():
        print(f"   {step:55s} {seconds:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=(*PATHS, "all"), default="all")
    parser.add_argument("--keep", type=Path, help="build the environments here and keep them")
    args = parser.parse_args()
    kinds = PATHS if args.path == "all" else (args.path,)
    os.environ.setdefault("FLIPLIB_DATA", str(ROOT.parent / "shared" / "data"))
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fliplib-run-paths-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            start = time.perf_counter()
            check_path(kind, work)
            print(f"== run path {kind!r}: passed in {time.perf_counter() - start:.0f} s")
    print(f"== run paths took {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
