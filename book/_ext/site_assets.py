"""Sphinx extension: each script and style sheet once per page.

With Sphinx 7.4, sphinx-thebe 0.3 and sphinx-togglebutton 0.3 as Jupyter Book 1.0 pins them,
the inline configuration scripts of thebe and togglebutton are added to every page twice. The
second ``const THEBE_JS_URL = ...`` is a JavaScript SyntaxError ("Identifier 'THEBE_JS_URL' has
already been declared") on every page, which the browser test (tests/browser/test_site.py)
reports. (Sphinx does not see the repeats: the first copy is registered with file name None,
the second with "".) This handler drops exact repeats (same file or inline body, same
attributes) from a page's list of scripts and style sheets, keeping the first of each and the
order.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def without_repeats(assets: list) -> list:
    """The assets in order, each (file or inline body, attributes) only at its first place."""
    seen, kept = set(), []
    for asset in assets:
        attributes = getattr(asset, "attributes", {}) or {}
        filename = getattr(asset, "filename", asset) or ""  # an inline script's is None or ""
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(asset)
    return kept


def drop_repeated_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """``html-page-context`` handler. It edits the lists in place, since they are the
    builder's own, to which later handlers may still add a page's scripts; and it runs early,
    since Sphinx stops calling these handlers at the first that returns a template name."""
    for name in ("script_files", "css_files"):
        if isinstance(context.get(name), list):
            context[name][:] = without_repeats(context[name])


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", drop_repeated_assets, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
