"""Sphinx extension for the book's API reference (book/api.md): short names and a completeness check.

The API reference documents every object once, in the module that defines it
(``fliplib.flip.closest_flip_points``), as the papers' equations and algorithms live in one
module each. Chapters and docstrings write the shorter names a reader types instead:
``{py:func}`fliplib.closest_flip_points``` for a name ``fliplib`` re-exports, or
``:func:`erf_network``` inside a module that imports it. This extension

- resolves such a reference to the entry of the object it names, found by importing it;
- warns on a reference to a ``fliplib.*`` name that names nothing documented (a typo or a
  removed function), which ``-W`` turns into a failed build, where Sphinx itself would
  silently print the name without a link;
- warns when a public ``fliplib`` module has no section on the API page;
- keeps numpydoc's plain-text types plain: in ``name : type`` lines, a ``*`` (as in
  ``shape (n, *image_shape_)``) and a trailing underscore (scikit-learn's fitted attributes,
  ``indices_``) are escaped before napoleon hands the docstring to reStructuredText, which
  would read them as emphasis and as hyperlink references.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

PACKAGE = "fliplib"


def import_dotted(name: str) -> object | None:
    """The object a dotted name denotes (a module, or attributes of one), or None."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


def defining_module(parent: str, name: str, obj: object) -> str | None:
    """For data (a dict, a number) which knows no module of its own: the ``fliplib`` module
    that lists ``name`` in its ``__all__`` and holds this very object (``parent`` if it does)."""
    package = importlib.import_module(PACKAGE)
    names = [parent] + [f"{PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]
    for module in map(importlib.import_module, names):
        if module is not package and name in getattr(module, "__all__", ()) and getattr(module, name, None) is obj:
            return module.__name__
    return None


def canonical_name(name: str) -> str | None:
    """Where the object called ``name`` is defined: ``fliplib.closest_flip_points`` ->
    ``fliplib.flip.closest_flip_points``; None when ``name`` is not a ``fliplib`` object.

    The outermost class or function along the dotted path decides the module, so methods and
    attributes follow their class (``fliplib.FlipResult.closest`` ->
    ``fliplib.flip.FlipResult.closest``); data re-exported by the package
    (``fliplib.ARCHITECTURES``) is found in the module that exports it.
    """
    parts = name.split(".")
    for split in range(1, len(parts) + 1):
        obj = import_dotted(".".join(parts[:split]))
        if obj is None:
            return None
        if hasattr(obj, "__path__") or isinstance(obj, type(importlib)):
            continue  # a package or module: go one step further down
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str):
            if not module.startswith(PACKAGE):
                return None
            return ".".join([module, qualname, *parts[split:]])
        parent = ".".join(parts[: split - 1])
        owner = defining_module(parent, parts[split - 1], obj)
        return ".".join([owner, *parts[split - 1 :]]) if owner else None
    return None


NUMPYDOC_FIELD = re.compile(r"^(\s*)(\w+(?:\s*,\s*\w+)*)(\s+:\s+)(.*)$")
TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=\W|$)")
TYPE_ONLY_SECTIONS = {"Returns", "Yields"}


def escape_markup(text: str) -> str:
    """``*`` and a trailing ``_`` of a word, escaped for reStructuredText."""
    return TRAILING_UNDERSCORE.sub(r"\\_", text.replace("*", r"\*"))


def escape_numpydoc_fields(app: Sphinx, what, name, obj, options, lines: list[str]) -> None:
    """``autodoc-process-docstring`` handler, run before napoleon's: escape the markup
    characters in the ``name : type`` lines of a numpydoc docstring, and in the type-only lines
    of its Returns and Yields sections. Lines with backquotes are left as written."""
    section, section_indent = None, ""
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and set(following.strip()) == {"-"}:
            section, section_indent = line.strip(), line[: len(line) - len(line.lstrip())]
            continue
        if "`" in line or not line.strip() or set(line.strip()) == {"-"}:
            continue
        at_field_indent = line[: len(line) - len(line.lstrip())] == section_indent
        match = NUMPYDOC_FIELD.match(line)
        if match and at_field_indent:
            indent, names, colon, kind = match.groups()
            lines[index] = f"{indent}{escape_markup(names)}{colon}{escape_markup(kind)}"
        elif section in TYPE_ONLY_SECTIONS and at_field_indent:
            lines[index] = section_indent + escape_markup(line.strip())


def resolve_short_name(app: Sphinx, env, node, contnode):
    """``missing-reference`` handler: retry a Python reference under its canonical name."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    candidates = [target]
    if node.get("py:module"):
        candidates.append(f"{node['py:module']}.{target}")
    domain = env.get_domain("py")
    for candidate in candidates:
        canonical = canonical_name(candidate) if candidate.startswith(PACKAGE) else None
        if canonical and canonical != target:
            resolved = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode)
            if resolved is not None:
                return resolved
    if target.startswith(PACKAGE + ".") or target == PACKAGE:
        logger.warning("reference to %s, which is not in the API reference (book/api.md)", target,
                       location=node, type="fliplib", subtype="api")
    return None


def check_every_module_is_documented(app: Sphinx, env) -> None:
    """``env-check-consistency`` handler: each public fliplib module needs its API section."""
    package = importlib.import_module(PACKAGE)
    documented = set(env.get_domain("py").data.get("modules", {}))
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        name = info.name
        if not any(part.startswith("_") for part in name.split(".")) and name not in documented:
            logger.warning("module %s has no section in the API reference (book/api.md)", name,
                           type="fliplib", subtype="api")


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", escape_numpydoc_fields, priority=400)
    app.connect("missing-reference", resolve_short_name)
    app.connect("env-check-consistency", check_every_module_is_documented)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
