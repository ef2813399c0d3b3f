"""Take the README's screenshot of the built book with headless Chromium.

Usage (after ``make book``)::

    .venv/bin/python tests/browser/screenshot.py [--page book/01_what_is_a_flip_point.html] [--output docs/screenshot.png]

Serves ``_build/html`` on 127.0.0.1 as the browser test does (with the network blocked), opens
the page at 1280 x 800, scrolls its first visible figure (or the first element that matches
``--selector``) into view, and saves a PNG reduced to a 64-colour palette (a few tens of
kilobytes) through a temporary file in the output's directory. For example, a region of
chapter 3 with equations::

    .venv/bin/python tests/browser/screenshot.py --page book/03_mnist.html --selector "div.math" --output /tmp/after.png
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_site import ROOT, chromium_driver, load_page, serve  # noqa: E402  (the browser test's own helpers)


def screenshot(site: Path, page: str, output: Path, *, width: int = 1280, height: int = 800,
               selector: str | None = None) -> None:
    driver = chromium_driver()
    try:
        driver.set_window_size(width, height)
        with serve(site) as base:
            load_page(driver, base + page)  # waits for the images and for MathJax
            if selector:
                found = driver.execute_script(
                    "const e = document.querySelector(arguments[0]);"
                    "if (e) { e.scrollIntoView({block: 'center'}); } return Boolean(e);", selector)
                if not found:
                    raise SystemExit(f"{page}: nothing matches {selector!r}")
            else:
                driver.execute_script(
                    "const img = Array.from(document.querySelectorAll('main img'))"
                    "  .find((i) => i.offsetParent !== null && i.naturalWidth > 300);"  # a visible figure
                    "if (img) { img.scrollIntoView({block: 'center'}); }"
                )
            time.sleep(1.0)  # let the scroll and the fonts settle
            png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output.parent, suffix=".png", delete=False) as stream:
        image.save(stream, format="PNG", optimize=True)
    os.chmod(stream.name, 0o644)  # a temporary file is created readable by its owner only
    os.replace(stream.name, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--page", default="book/01_what_is_a_flip_point.html")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--selector", help="CSS selector of the element to centre (default: the first figure)")
    args = parser.parse_args()
    screenshot(args.site, args.page, args.output, selector=args.selector)
    print(f"{args.output}: {args.output.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
