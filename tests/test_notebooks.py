"""Checks on the book's sources that are cheap to run and expensive to find in a build.

The book is executed from scratch by ``jupyter-book build`` (see ``_config.yml``); these tests
catch, in well under a second, the mistakes that would otherwise surface half an hour into a
build or only on Binder and Colab: committed outputs, a wrong kernel, a first cell that is not
the set-up cell, an import that the install line of the set-up cell does not install, code
wider than the page's code box, a notebook missing from ``_toc.yml``, a ``_toc.yml`` entry
with no file, a citation key missing from ``references.bib``. (``tests/run_paths.py``, run by
``make run-path-test``, runs the set-up cells in fresh environments.)
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TOC = ROOT / "_toc.yml"
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = ROOT / "fliplib"
CONFIG = ROOT / "_config.yml"
BIBLIOGRAPHY = ROOT / "references.bib"

SOURCE_SUFFIXES = (".md", ".ipynb")
PIP_SENTINEL = "__pip_install__"
# The widest code line the book's code box shows without a scroll bar (checked in Chromium at
# 1280 and 1440 pixels by tests/browser/test_site.py).
MAX_CODE_WIDTH = 80
# At most a fifth of the 551 glue() calls the chapters had before they were rewritten
# around short cells that show their numbers.
MAX_GLUE_CALLS = 110

# The first code cell of every notebook, character for character. Locally fliplib is
# installed and the cell only imports it; on Colab or Binder it installs fliplib with the
# book's extras, and TensorFlow (the `tf` extra) only when none is installed, so that
# Colab's own GPU build is kept. The `glue` fallback lets the chapters run outside the
# book build (plain Jupyter, Colab), where myst_nb is not installed.
SETUP_CELL = '''\
# Set-up. Locally (make book / make lab) fliplib is installed and this does
# nothing. On Colab or Binder it installs fliplib with the book's extras; it
# adds TensorFlow only when none is installed, so Colab's own (GPU) TensorFlow
# is kept.
import importlib.util

if importlib.util.find_spec("fliplib") is None:
    extras = "book" if importlib.util.find_spec("tensorflow") else "book,tf"
    source = "git+https://github.com/flip-points/flip-points"
    %pip install --quiet "fliplib[{extras}] @ {source}"
import fliplib

try:
    from myst_nb import glue  # the book pastes computed numbers into the text
except ImportError:  # plain Jupyter or Colab: show the value instead

    def glue(name, value, display=True):
        print(f"{name} = {value}")'''


def book_notebooks() -> list[Path]:
    """Every notebook under ``book/``, checkpoints excluded, sorted."""
    return sorted(
        path for path in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts
    )


def book_pages() -> list[Path]:
    """Every Markdown page and notebook under ``book/``, checkpoints excluded, sorted."""
    pages = [path for path in BOOK.rglob("*.md") if ".ipynb_checkpoints" not in path.parts]
    return sorted(pages + book_notebooks())


NOTEBOOKS = book_notebooks()


def _notebook_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------------------------------
# Small functions the tests are built on (each is tested on its own below)
# --------------------------------------------------------------------------------------


def toc_files(toc: dict) -> list[str]:
    """Every document named in a parsed ``_toc.yml``: the root, then each ``file`` entry.

    Parameters
    ----------
    toc : dict
        The parsed YAML of a sphinx-external-toc table of contents (any format).

    Returns
    -------
    list of str
        The entries as written (relative to the repository root, suffix optional), in the
        order they appear.
    """
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError("a table of contents must be a mapping with a 'root' entry")
    found = [str(toc["root"])]

    def visit(node: object) -> None:
        if isinstance(node, dict):
            if "glob" in node:
                raise ValueError(f"glob entries are not allowed in _toc.yml: {node['glob']!r}")
            if "file" in node:
                found.append(str(node["file"]))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit({key: value for key, value in toc.items() if key != "root"})
    return found


def toc_sources(entry: str, *, root: Path = ROOT) -> list[Path]:
    """The source files a ``_toc.yml`` entry can refer to (zero, one, or ambiguously more)."""
    path = root / entry
    if path.suffix in SOURCE_SUFFIXES:
        return [path] if path.is_file() else []
    return [path.with_name(path.name + suffix) for suffix in SOURCE_SUFFIXES
            if path.with_name(path.name + suffix).is_file()]


def committed_outputs(notebook: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells that carry outputs or an execution count."""
    return [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def _replace_pip_magics(source: str) -> str:
    """Turn ``%pip install ...`` lines into calls of a sentinel, keeping the indentation.

    IPython magics are not Python; after this, the cell parses with :mod:`ast` and the
    sentinel call marks where the install happens. Other magics become ``pass``.
    """
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if re.match(r"%pip\s+install\b", stripped):
            lines.append(f"{indent}{PIP_SENTINEL}({stripped!r})")
        elif stripped.startswith(("%", "!")):
            lines.append(f"{indent}pass")
        else:
            lines.append(line)
    return "\n".join(lines)


def cited_keys(text: str) -> set[str]:
    """Citation keys used with MyST ``{cite}``, ``{cite:p}``, ``{cite:t}``, ... roles."""
    keys = set()
    for match in re.finditer(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
        keys.update(key.strip() for key in match.group(1).split(",") if key.strip())
    return keys


def bibtex_keys(text: str) -> list[str]:
    """Entry keys of a BibTeX file, in order (``@comment``, ``@string``, ``@preamble`` excluded)."""
    return [
        match.group(2)
        for match in re.finditer(r"^\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", text, flags=re.MULTILINE)
        if match.group(1).lower() not in {"comment", "string", "preamble"}
    ]


def page_text(path: Path) -> str:
    """The Markdown of a page: the file itself, or the Markdown cells of a notebook."""
    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return path.read_text(encoding="utf-8")


def imported_modules(source: str) -> set[str]:
    """Top-level names of the modules a code cell imports (at any depth, absolute imports).

    IPython magics are turned into Python first (:func:`_replace_pip_magics`); a cell that
    still does not parse raises ``SyntaxError``, since then its imports cannot be known.
    """
    found = set()
    for node in ast.walk(ast.parse(_replace_pip_magics(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``"Foo_bar>=1; x"`` -> ``foo-bar``)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if name is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", name.group(1)).lower()


def declared_requirements(pyproject: dict, extras: tuple[str, ...]) -> set[str]:
    """Distribution names that ``pip install "fliplib[extras]"`` asks for directly."""
    project = pyproject["project"]
    names = {requirement_name(r) for r in project["dependencies"]}
    for extra in extras:
        if extra not in project.get("optional-dependencies", {}):
            raise KeyError(f"pyproject.toml has no extra {extra!r}")
        names |= {requirement_name(r) for r in project["optional-dependencies"][extra]}
    return names


def installed_closure(names: set[str]) -> set[str]:
    """``names`` and, recursively, what their installed distributions require (extras not
    followed), as far as it is installed here."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [requirement_name(r) for r in requires if not re.search(r"\bextra\s*==", r)]
    return seen


def module_distributions() -> dict[str, set[str]]:
    """Importable top-level module -> the normalised names of the distributions providing it."""
    return {
        module: {requirement_name(dist) for dist in dists}
        for module, dists in importlib.metadata.packages_distributions().items()
    }


def uncovered_imports(modules: set[str], covered: set[str], providers: dict[str, set[str]]) -> list[str]:
    """The third-party modules among ``modules`` that no distribution in ``covered`` provides."""
    return sorted(
        module for module in modules
        if module not in sys.stdlib_module_names and module != "fliplib"
        and not providers.get(module, set()) & covered
    )


def wide_lines(source: str, limit: int) -> list[str]:
    """The lines of ``source`` longer than ``limit`` characters."""
    return [line for line in source.splitlines() if len(line) > limit]


# --------------------------------------------------------------------------------------
# The helpers themselves
# --------------------------------------------------------------------------------------

def test_committed_outputs_finds_outputs_and_execution_counts() -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title"),
            nbformat.v4.new_code_cell("1 + 1"),
            nbformat.v4.new_code_cell(
                "print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")]
            ),
            nbformat.v4.new_code_cell("2 + 2", execution_count=3),
        ]
    )
    assert committed_outputs(notebook) == [2, 3]


def test_toc_files_walks_parts_chapters_and_sections() -> None:
    toc = {
        "format": "jb-book",
        "root": "book/intro",
        "parts": [
            {"caption": "One", "chapters": [
                {"file": "book/a", "sections": [{"file": "book/a1"}]},
                {"url": "https://example.org", "title": "not a file"},
            ]},
            {"caption": "Two", "chapters": [{"file": "book/b.ipynb"}]},
        ],
    }
    assert toc_files(toc) == ["book/intro", "book/a", "book/a1", "book/b.ipynb"]


@pytest.mark.parametrize("toc", [{"format": "jb-book"}, ["book/intro"], {"root": "x", "chapters": [{"glob": "book/*"}]}])
def test_toc_files_rejects_what_it_cannot_check(toc: object) -> None:
    with pytest.raises(ValueError):
        toc_files(toc)  # type: ignore[arg-type]


def test_toc_sources_resolves_suffixes_and_ambiguity(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text("# Page\n")
    (tmp_path / "both.md").write_text("# Both\n")
    (tmp_path / "both.ipynb").write_text("{}")
    assert toc_sources("page", root=tmp_path) == [tmp_path / "page.md"]
    assert toc_sources("page.md", root=tmp_path) == [tmp_path / "page.md"]
    assert toc_sources("missing", root=tmp_path) == []
    assert len(toc_sources("both", root=tmp_path)) == 2


def test_cited_keys_reads_every_cite_role() -> None:
    text = "A {cite}`a` and {cite:p}`b, c` and {cite:t}`d`; not `e` nor {ref}`f`."
    assert cited_keys(text) == {"a", "b", "c", "d"}


def test_bibtex_keys_skips_comments_and_strings() -> None:
    text = "@string{pmlr = {PMLR}}\n@comment{x,}\n@Article{one,\n title={T}}\n  @book{ two ,\n}"
    assert bibtex_keys(text) == ["one", "two"]


def test_imported_modules_reads_every_import_form() -> None:
    source = (
        "import os, numpy.linalg as la\nfrom scipy import special\nfrom . import x\n"
        "try:\n    import dice_ml\nexcept ImportError:\n    %pip install dice-ml\n"
        "def f():\n    from foolbox.attacks import L2DeepFoolAttack\n"
    )
    assert imported_modules(source) == {"os", "numpy", "scipy", "dice_ml", "foolbox"}
    with pytest.raises(SyntaxError):
        imported_modules("import (\n")


def test_requirements_are_read_with_extras_and_markers() -> None:
    assert requirement_name("Dice_ML>=0.12; python_version > '3'") == "dice-ml"
    pyproject = {"project": {"dependencies": ["numpy>=1"], "optional-dependencies": {
        "book": ["foolbox>=3"], "tf": ["tensorflow-cpu>=2; sys_platform == 'linux'"]}}}
    assert declared_requirements(pyproject, ("book",)) == {"numpy", "foolbox"}
    assert declared_requirements(pyproject, ("book", "tf")) == {"numpy", "foolbox", "tensorflow-cpu"}
    with pytest.raises(KeyError):
        declared_requirements(pyproject, ("gpu",))


def test_uncovered_imports_names_what_no_declared_distribution_provides() -> None:
    providers = {"sklearn": {"scikit-learn"}, "foolbox": {"foolbox"}, "hypothesis": {"hypothesis"}}
    modules = {"os", "fliplib", "sklearn", "foolbox", "hypothesis", "not_installed"}
    assert uncovered_imports(modules, {"scikit-learn", "foolbox"}, providers) == [
        "hypothesis", "not_installed"]


def test_wide_lines_counts_characters() -> None:
    assert wide_lines("a" * 80 + "\n" + "b" * 81 + "\n", 80) == ["b" * 81]


# --------------------------------------------------------------------------------------
# The book's notebooks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_notebook_is_valid_nbformat_4(path: Path) -> None:
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert notebook.nbformat == 4, f"{path.name}: nbformat {notebook.nbformat}, expected 4"
    nbformat.validate(notebook)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_notebook_has_no_committed_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    dirty = committed_outputs(notebook)
    assert not dirty, (
        f"{path.name}: code cells {dirty} hold outputs or execution counts; the book executes "
        "every notebook itself, so clear them (e.g. `jupyter nbconvert --clear-output --inplace`)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_notebook_uses_the_python3_kernel(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    kernelspec = notebook.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{path.name}: kernelspec {kernelspec!r}"
    assert kernelspec.get("language", "python") == "python"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_first_code_cell_is_the_setup_cell(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, f"{path.name}: no code cells"
    assert code_cells[0].source == SETUP_CELL, (
        f"{path.name}: the first code cell must be exactly the set-up cell:\n{SETUP_CELL}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_only_the_setup_cell_imports_myst_nb(path: Path) -> None:
    """The set-up cell imports ``glue`` with its fallback; a bare ``from myst_nb import glue``
    elsewhere fails outside the book build (plain Jupyter, Colab)."""
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    offenders = [
        number for number, cell in enumerate(code_cells[1:], start=2)
        if "myst_nb" in imported_modules(cell.source)
    ]
    assert not offenders, f"{path.name}: code cells {offenders} import myst_nb; use the set-up cell's glue"


def test_every_notebook_import_is_installed_by_the_setup_cell() -> None:
    """Every third-party module a chapter imports, directly or through the fliplib modules,
    comes with ``fliplib[book,tf]`` (what the set-up cell installs on a machine without
    TensorFlow): a base dependency, the ``tf`` or the ``book`` extra, or something they
    require. Needs the project's environment (``make test``), where all of it is installed.
    """
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    covered = installed_closure(declared_requirements(pyproject, ("book", "tf")))
    providers = module_distributions()
    problems = {}
    sources = {path.name: "\n".join(
        cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
        for path in NOTEBOOKS}
    sources |= {f"fliplib/{path.name}": path.read_text(encoding="utf-8") for path in PACKAGE.glob("*.py")}
    for name, source in sources.items():
        missing = uncovered_imports(imported_modules(source), covered, providers)
        if missing:
            problems[name] = missing
    assert not problems, (
        f"imports that fliplib[book,tf] does not install (add them to the book extra): {problems}"
    )


def test_code_lines_fit_the_code_box() -> None:
    """No code line wider than MAX_CODE_WIDTH characters (the book's code box shows that
    many without a scroll bar; format with `ruff format --line-length 80`)."""
    problems = {}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        lines = [
            line for cell in notebook.cells if cell.cell_type == "code"
            for line in wide_lines(cell.source, MAX_CODE_WIDTH)
        ]
        if lines:
            problems[path.name] = (len(lines), max(map(len, lines)))
    assert not problems, (
        f"code lines wider than {MAX_CODE_WIDTH} characters, (count, widest) per notebook: {problems}"
    )


def test_glue_calls_are_few() -> None:
    """At most MAX_GLUE_CALLS ``glue(`` calls in all the chapters' code (the set-up cell's
    ``def glue(`` fallback not counted): numbers a reader needs are shown by short cells, and
    glued into prose only where a sentence needs one."""
    counts = {}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        counts[path.name] = sum(cell.source.count("glue(") for cell in code_cells[1:])
    total = sum(counts.values())
    assert total <= MAX_GLUE_CALLS, f"{total} glue( calls (at most {MAX_GLUE_CALLS}): {counts}"


# --------------------------------------------------------------------------------------
# The table of contents, the configuration and the bibliography
# --------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def test_every_toc_entry_names_exactly_one_existing_page() -> None:
    toc = _load_yaml(TOC)
    assert toc.get("format") == "jb-book"
    problems = []
    for entry in toc_files(toc):
        sources = toc_sources(entry)
        if len(sources) != 1:
            problems.append(f"{entry}: {[p.name for p in sources] or 'no such file'}")
    assert not problems, "_toc.yml entries that do not name exactly one file: " + "; ".join(problems)


def test_toc_lists_no_page_twice() -> None:
    entries = [toc_sources(entry)[0] for entry in toc_files(_load_yaml(TOC)) if toc_sources(entry)]
    assert len(entries) == len(set(entries))


def test_every_page_under_book_is_in_the_toc() -> None:
    listed = {path for entry in toc_files(_load_yaml(TOC)) for path in toc_sources(entry)}
    missing = [path.relative_to(ROOT).as_posix() for path in book_pages() if path not in listed]
    assert not missing, f"pages under book/ missing from _toc.yml (they would not be built): {missing}"


def test_config_runs_every_notebook_and_fails_on_errors() -> None:
    config = _load_yaml(CONFIG)
    assert config["title"] == "Flip Points"
    assert config["only_build_toc_files"] is True
    execute = config["execute"]
    # every notebook executed on every build: `make book` empties the cache, fills it (two
    # notebooks at a time) and only then builds from it
    assert execute["execute_notebooks"] == "cache"
    assert execute["run_in_temp"] is False
    recipe = [
        line.strip()
        for line in (ROOT / "Makefile").read_text().split("\nbook: $(STAMP)\n", 1)[1].split("\n\n", 1)[0].splitlines()
    ]
    assert recipe == [
        f"rm -rf {execute['cache']}",
        "$(BIN)/python book/_ext/execute_chapters.py",
        "$(BIN)/jupyter-book build . --builder html -W --keep-going",
    ], recipe
    assert execute["allow_errors"] is False
    assert execute["raise_on_error"] is True
    assert execute["timeout"] >= 600
    assert execute["stderr_output"] in {"show", "remove", "remove-warn", "warn", "error", "severe"}
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"]
    assert config["repository"]["url"].startswith("https://github.com/")


def test_config_bibliography_exists() -> None:
    config = _load_yaml(CONFIG)
    for name in config["bibtex_bibfiles"]:
        assert (ROOT / name).is_file(), f"_config.yml names a missing bibliography {name}"


def test_bibliography_keys_are_unique() -> None:
    keys = bibtex_keys(BIBLIOGRAPHY.read_text(encoding="utf-8"))
    assert keys, "references.bib holds no entries"
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f"duplicate keys in references.bib: {duplicates}"


def test_every_citation_is_in_the_bibliography() -> None:
    known = set(bibtex_keys(BIBLIOGRAPHY.read_text(encoding="utf-8")))
    unknown = {
        path.relative_to(ROOT).as_posix(): sorted(cited_keys(page_text(path)) - known)
        for path in book_pages()
    }
    unknown = {page: keys for page, keys in unknown.items() if keys}
    assert not unknown, f"citation keys missing from references.bib: {unknown}"


def _execute_chapters():
    """The book's parallel executor, ``book/_ext/execute_chapters.py``, as a module."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import execute_chapters
    finally:
        sys.path.pop(0)
    return execute_chapters


def test_the_parallel_executor_runs_every_notebook_of_the_toc_in_order() -> None:
    execute_chapters = _execute_chapters()
    found = execute_chapters.toc_notebooks(_load_yaml(TOC))
    listed = [path for entry in toc_files(_load_yaml(TOC)) for path in toc_sources(entry) if path.suffix == ".ipynb"]
    assert found == listed and len(found) >= 8


def test_kernels_running_side_by_side_share_the_cores_as_threads() -> None:
    execute_chapters = _execute_chapters()
    assert execute_chapters.kernel_threads(1, 2) == {}  # one kernel alone: TensorFlow's defaults
    two = execute_chapters.kernel_threads(2, 2)
    assert two == {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    assert execute_chapters.kernel_threads(2, 8)["TF_NUM_INTRAOP_THREADS"] == "4"
    assert execute_chapters.kernel_threads(4, 2)["TF_NUM_INTRAOP_THREADS"] == "1"  # never zero
