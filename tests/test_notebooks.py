"""Checks on the book's sources that are cheap to run and expensive to find in a build.

The book is executed from scratch by ``jupyter-book build`` (see ``_config.yml``); these tests
catch, in well under a second, the mistakes that would otherwise surface half an hour into a
build or only on Binder and Colab: committed outputs, a wrong kernel, a first cell that
cannot install ``fliplib``, a notebook missing from ``_toc.yml``, a ``_toc.yml`` entry with no
file, a citation key missing from ``references.bib``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TOC = ROOT / "_toc.yml"
CONFIG = ROOT / "_config.yml"
BIBLIOGRAPHY = ROOT / "references.bib"

SOURCE_SUFFIXES = (".md", ".ipynb")
PIP_SENTINEL = "__pip_install__"


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


def _imports_fliplib(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Import) and any(
        alias.name == "fliplib" for alias in statement.names
    )


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return any(isinstance(name, ast.Name) and name.id == "ImportError" for name in names)


def _calls_pip_install(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id == PIP_SENTINEL
    )


def installs_fliplib_when_missing(source: str) -> bool:
    """Whether a code cell installs ``fliplib`` when, and only when, it cannot be imported.

    The accepted shape, at the top level of the cell (on Colab and Binder ``fliplib`` is not
    yet installed; in the project's own environment it is, and nothing is installed)::

        try:
            import fliplib
        except ImportError:
            %pip install ...

    The ``try`` body must contain ``import fliplib``; an ``except`` clause that names
    ``ImportError`` (alone or in a tuple, ``ModuleNotFoundError`` does not count) must run
    ``%pip install``. Other statements may come before or after.
    """
    try:
        module = ast.parse(_replace_pip_magics(source))
    except SyntaxError:
        return False
    for statement in module.body:
        if not isinstance(statement, ast.Try):
            continue
        if not any(_imports_fliplib(inner) for inner in statement.body):
            continue
        for handler in statement.handlers:
            if handler.type is not None and _catches_import_error(handler):
                if any(_calls_pip_install(inner) for inner in handler.body):
                    return True
    return False


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


# --------------------------------------------------------------------------------------
# The helpers themselves
# --------------------------------------------------------------------------------------

INSTALL_CELL = """\
try:
    import fliplib
except ImportError:
    %pip install --quiet "fliplib[book] @ git+https://github.com/flip-points/flip-points"
    import fliplib
"""


@pytest.mark.parametrize(
    "source",
    [
        INSTALL_CELL,
        "import os\n" + INSTALL_CELL + "import numpy as np\n",
        "try:\n    import fliplib\nexcept (ImportError, OSError):\n    %pip install fliplib\n",
    ],
    ids=["plain", "with-neighbours", "tuple"],
)
def test_install_check_accepts_the_agreed_shape(source: str) -> None:
    assert installs_fliplib_when_missing(source)


@pytest.mark.parametrize(
    "source",
    [
        "import fliplib\n",
        "%pip install fliplib\nimport fliplib\n",
        "try:\n    import fliplib\nexcept ImportError:\n    !pip install fliplib\n",
        "try:\n    import fliplib\nexcept ModuleNotFoundError:\n    %pip install fliplib\n",
        "try:\n    import fliplib\nexcept:\n    %pip install fliplib\n",
        "try:\n    import numpy\nexcept ImportError:\n    %pip install fliplib\n",
        "try:\n    import fliplib\nexcept ImportError:\n    pass\n%pip install fliplib\n",
        "try:\n    import fliplib\nexcept ImportError:\n    # %pip install fliplib\n    pass\n",
        "try:\n    from fliplib import flip\nexcept ImportError:\n    %pip install fliplib\n",
        "if True:\n    try:\n        import fliplib\n    except ImportError:\n        %pip install fliplib\n",
        "try:\n    import fliplib\nexcept ImportError:\n    %pip install fliplib\n  broken indentation\n",
    ],
    ids=[
        "no-try", "unconditional-pip", "shell-pip", "other-exception", "bare-except",
        "other-module", "pip-outside-except", "commented-pip", "from-import", "nested", "syntax",
    ],
)
def test_install_check_rejects_other_shapes(source: str) -> None:
    assert not installs_fliplib_when_missing(source)


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
def test_first_code_cell_installs_fliplib_when_missing(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, f"{path.name}: no code cells"
    assert installs_fliplib_when_missing(code_cells[0].source), (
        f"{path.name}: the first code cell must contain, at top level,\n{INSTALL_CELL}"
    )


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
    assert execute["execute_notebooks"] == "force"
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
