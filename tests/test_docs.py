"""What the book's reference pages tell a reader to type, run as written.

- The ``>>>`` examples of the API page's "First steps" (``book/api.md``) run as doctests: the
  outputs shown on the page are what the code gives.
- The docstrings that the API page renders give each attribute its own entry: Sphinx reads an
  entry ``source, target : ndarray`` of an "Attributes" section as an attribute ``target`` of
  type ``source,`` (it shows "target (source,)"), unlike the same line under "Parameters".
- ``import fliplib`` without TensorFlow says which extra to install.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import fliplib

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "book" / "api.md"


def test_the_api_page_examples_run_as_shown() -> None:
    text = API_PAGE.read_text(encoding="utf-8")
    assert text.count(">>> ") >= 20, "the API page's First steps have lost their examples"
    result = doctest.testfile(
        str(API_PAGE), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False, report=True,
    )
    assert result.attempted >= 20
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {API_PAGE.name} failed (see above)"


def test_the_doctest_run_catches_a_wrong_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```pycon\n>>> 1 + 1\n3\n\n```\n", encoding="utf-8")
    result = doctest.testfile(str(page), module_relative=False, verbose=False, report=False)
    assert (result.attempted, result.failed) == (1, 1)


# --------------------------------------------------------------------------------------
# Docstrings that the API page renders
# --------------------------------------------------------------------------------------


def section_entries(docstring: str, title: str) -> list[str]:
    """The entry lines (``name : type``) of one numpydoc section of a docstring."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    entries, inside = [], False
    for number, line in enumerate(lines):
        underline = lines[number + 1] if number + 1 < len(lines) else ""
        if re.fullmatch(r"-{3,}", underline.strip()) and line.strip():
            inside = line.strip() == title
            continue
        if inside and line and not line.startswith(" ") and not re.fullmatch(r"-{3,}", line.strip()):
            entries.append(line)
    return entries


def grouped_entries(entries: list[str]) -> list[str]:
    """Entries that name several attributes at once (``a, b : type``)."""
    return [entry for entry in entries if "," in entry.partition(" : ")[0]]


def test_section_entries_reads_one_section() -> None:
    doc = """Summary.

    Parameters
    ----------
    x, y : int
        Values.

    Attributes
    ----------
    a : int
        One.
    b, c : ndarray
        Two.
    """
    assert section_entries(doc, "Attributes") == ["a : int", "b, c : ndarray"]
    assert grouped_entries(section_entries(doc, "Attributes")) == ["b, c : ndarray"]
    assert grouped_entries(section_entries(doc, "Parameters")) == ["x, y : int"]


def documented_classes() -> list[tuple[str, type]]:
    """Every class defined in a fliplib module (the API page documents all of them)."""
    found = []
    for info in pkgutil.iter_modules(fliplib.__path__):
        module = importlib.import_module(f"fliplib.{info.name}")
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                found.append((f"{module.__name__}.{name}", value))
    return found


def test_attribute_sections_name_one_attribute_per_entry() -> None:
    problems = {
        name: grouped_entries(section_entries(cls.__doc__, "Attributes"))
        for name, cls in documented_classes()
    }
    problems = {name: entries for name, entries in problems.items() if entries}
    assert not problems, (
        "Attributes entries naming several attributes render misparsed on the API page "
        f"(one entry per attribute): {problems}"
    )


# --------------------------------------------------------------------------------------
# Installing
# --------------------------------------------------------------------------------------


def test_import_without_tensorflow_names_the_tf_extra() -> None:
    code = "import sys; sys.modules['tensorflow'] = None; import fliplib"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and "fliplib[tf]" in last, run.stderr


def test_tensorflow_is_the_tf_extra_not_a_base_dependency() -> None:
    """A base requirement would install tensorflow-cpu beside Colab's own TensorFlow."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [r for r in project["dependencies"] if r.lower().startswith("tensorflow")]
    tf_extra = project["optional-dependencies"]["tf"]
    assert {r.split(">")[0].split(";")[0].strip() for r in tf_extra} == {"tensorflow-cpu", "tensorflow"}


# A reference such as {py:func}`fliplib.studies.images.sparsity` to a name that no longer exists
# fails the book build (book/_ext/fliplib_api.py); this finds it in seconds, before the build.
REFERENCE = re.compile(r"(?:\{py:\w+\}|:(?:func|class|mod|meth|attr|data|obj):)`~?(fliplib(?:\.\w+)*)`")


def _book_texts() -> dict[str, str]:
    texts = {}
    for path in sorted((ROOT / "book").glob("*.md")):
        texts[path.name] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts[path.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for path in sorted((ROOT / "fliplib").rglob("*.py")):
        texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    return texts


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _documented(canonical: str | None) -> bool:
    """Whether autodoc's ``:members:`` renders the object: its module lists it in ``__all__``."""
    if canonical is None:
        return False
    parts = canonical.split(".")
    for split in range(len(parts) - 1, 0, -1):
        if _is_module(".".join(parts[:split])):
            module = importlib.import_module(".".join(parts[:split]))
            return parts[split] in getattr(module, "__all__", [parts[split]])
    return False


def test_every_fliplib_reference_names_a_public_object() -> None:
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from fliplib_api import canonical_name
    finally:
        sys.path.pop(0)
    broken = []
    for where, text in _book_texts().items():
        for name in set(REFERENCE.findall(text)):
            if not (_is_module(name) or _documented(canonical_name(name))) or any(
                part.startswith("_") for part in name.split(".")
            ):
                broken.append(f"{where}: {name}")
    assert not broken, "references to names that are not public fliplib objects:\n" + "\n".join(sorted(broken))


def test_every_public_module_has_a_section_on_the_api_page() -> None:
    documented = set(re.findall(r"\.\. automodule:: (\S+)", API_PAGE.read_text(encoding="utf-8")))
    modules = {
        info.name
        for info in pkgutil.walk_packages(fliplib.__path__, prefix="fliplib.")
        if not any(part.startswith("_") for part in info.name.split("."))
    }
    assert modules - documented == set(), f"modules without an API section: {sorted(modules - documented)}"
