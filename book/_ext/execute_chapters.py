"""Execute the book's notebooks side by side, into the cache that ``jupyter-book build`` reads.

``make book`` empties the cache, runs this script, then builds: each notebook of ``_toc.yml`` is
executed from scratch in its own kernel, one per CPU core (at most ``--jobs``), with the
working directory, cell timeout and error policy of ``_config.yml``, and stored in the
jupyter-cache at ``execute.cache``.  The build (``execute_notebooks: cache``) then finds every
notebook there, unchanged, and renders its outputs.  The chapters are independent and a kernel
keeps a core only about busy, so two at a time shorten the build on two cores; what the site
shows is still what the code does now, as every build starts from an empty cache.

Each kernel gets its share of the cores as its thread count (:func:`kernel_threads`):
TensorFlow otherwise sizes its thread pools to every core in each kernel, and two kernels' pools
then contend for the same cores.  On two cores, two copies of the same workload (an erf network
of chapter 3 trained for two epochs, then closest flip points of 60 images) side by side took
68 s with one thread each against 91 s with TensorFlow's default; their flip-point distances
agreed to 1e-11.  Variables already set in the environment are kept.

A notebook that raises stops the script with its traceback and a non-zero exit (before the
build, which would otherwise execute it a second time to fail).

Usage::

    python book/_ext/execute_chapters.py [--jobs N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors.basic import ExecutionWorkerLocalMProc, ProcessData

ROOT = Path(__file__).resolve().parents[2]


def toc_notebooks(toc: dict) -> list[Path]:
    """The notebooks of ``_toc.yml``, in the book's order."""
    files: list[str] = []

    def walk(entry):
        if isinstance(entry, dict):
            if "file" in entry:
                files.append(entry["file"])
            for value in entry.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)

    walk(toc)
    paths = [ROOT / f"{name}.ipynb" for name in files]
    return [p for p in paths if p.exists()]


def kernel_threads(jobs: int, cores: int) -> dict[str, str]:
    """The thread settings of each kernel when ``jobs`` kernels share ``cores`` cores.

    One kernel alone keeps TensorFlow's defaults (an empty dict).  Otherwise each kernel's
    TensorFlow runs ``cores // jobs`` threads within an operation (at least one) and one
    operation at a time, and OpenMP (used by oneDNN) as many.
    """
    if jobs <= 1:
        return {}
    threads = str(max(1, cores // jobs))
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="kernels at a time, at most (default 2)")
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    if config.get("execute_notebooks") != "cache" or config.get("run_in_temp"):
        sys.exit("_config.yml must set execute_notebooks: cache and run_in_temp: false")
    cache = get_cache(str(ROOT / config["cache"]))
    notebooks = toc_notebooks(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    records = [cache.add_nb_to_project(str(path)) for path in notebooks]
    jobs = max(1, min(args.jobs, os.cpu_count() or 1, len(records)))
    settings = kernel_threads(jobs, os.cpu_count() or 1)
    for name, value in settings.items():  # the kernels inherit this environment
        os.environ.setdefault(name, value)
    threads = ", ".join(f"{name}={os.environ[name]}" for name in settings) or "TensorFlow's default threads"
    print(f"executing {len(records)} notebooks, {jobs} at a time ({threads})", flush=True)
    work = [ProcessData(r.pk, r.uri, cache, int(config["timeout"]), bool(config["allow_errors"])) for r in records]
    start = time.perf_counter()
    # one kernel per task; in the toc's order, which on two cores already puts the long
    # chapters early
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        for status, uri in pool.imap_unordered(ExecutionWorkerLocalMProc(), work, chunksize=1):
            name = Path(uri).name
            print(f"[{time.perf_counter() - start:6.0f} s] {'ok' if status == 0 else 'FAILED'}: {name}", flush=True)
    failed = [r for r in cache.list_project_records() if r.traceback]
    for record in failed:
        print(f"\n=== {Path(record.uri).name} raised:\n{record.traceback}", file=sys.stderr)
    missing = [path.name for path in notebooks if cache.get_cached_project_nb(str(path)) is None]
    if failed or missing:
        print(f"not executed: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"all {len(records)} notebooks executed in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
