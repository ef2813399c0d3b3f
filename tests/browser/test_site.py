r"""The built book, opened page by page in headless Chromium.

Serves the built site (``_build/html``, or the directory in ``FLIPLIB_SITE``) on 127.0.0.1 and
opens every HTML page in headless Chromium driven by Selenium. A page fails when

- it does not load: no title, or no main content, or the browser gives up on it;
- it links to a page or file of the site that does not exist, or to an anchor (``#...``) that
  the target page does not have;
- one of its images fails to load;
- a JavaScript error occurs on it (an uncaught exception, a rejected promise, or an error the
  page logs to the console), or a script, style sheet or other file of the site that it asks
  for fails to load;
- it asks for anything from another host (a script, style sheet, font or image from a CDN):
  the site must work with no network;
- its mathematics is not rendered: an element that holds TeX (Sphinx's ``math`` class) has no
  MathJax output in it, or raw delimiters ``\(``, ``\)``, ``\[``, ``\]`` or ``$$`` remain in
  the visible text outside code.

The browser resolves no host names but 127.0.0.1 (the network is blocked), so the test checks
the site itself and runs the same offline and online. ``test_checker_catches_*`` breaks a copy
of the built site on purpose and shows that each kind of damage is reported. Two more tests
open pages from the files on disk (``file://``, as a reader who opens ``_build/html/index.html``
does), and check at 1280 and 1440 pixels that an 80-character code line fits the code box.

Not part of ``make test`` (the ``browser`` marker is deselected by default); run it after
building the book with ``make browser-test``. Needs Debian's ``chromium`` and
``chromium-driver`` packages (or ``CHROMIUM`` / ``CHROMEDRIVER`` pointing at a Chromium and
its driver) and the ``browser`` extra (Selenium).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("FLIPLIB_SITE", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SKIPPED_DIRECTORIES = {"_static", "_sources", "_images", "_downloads"}
PAGE_TIMEOUT = 60  # seconds for one page to load, generous for a loaded CI machine

# Installed before any script of a page runs: records uncaught errors, rejected promises, and
# resources (scripts, style sheets, images) that fail to load, whose error events do not
# bubble but are seen in the capture phase.
ERROR_RECORDER = """
window.__siteErrors = [];
window.addEventListener("error", (event) => {
  const t = event.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__siteErrors.push("failed to load " + t.tagName.toLowerCase() + " " + (t.src || t.href));
  } else {
    window.__siteErrors.push("uncaught " + (event.message || "error") + " at " + (event.filename || "?") + ":" + (event.lineno || 0));
  }
}, true);
window.addEventListener("unhandledrejection", (event) => {
  window.__siteErrors.push("unhandled promise rejection: " + String(event.reason));
});
"""

# Run after the load event, asynchronously: wait until MathJax (if the page loaded it) has
# typeset the page. Without MathJax, window.MathJax is at most the configuration object.
MATHJAX_DONE = """
const done = arguments[arguments.length - 1];
const mj = window.MathJax;
if (mj && mj.startup && mj.startup.promise) {
  mj.startup.promise.then(() => done("typeset"), (error) => done("failed: " + error));
} else {
  done("absent");
}
"""

# The page's mathematics: elements that hold TeX for MathJax (Sphinx writes them with the
# class "math") without MathJax output inside, and raw TeX delimiters left in the visible text
# outside code. The text is read from a copy of the page without code, scripts and MathJax's
# output (whose hidden assistive MathML is not text a reader sees).
MATH_STATE = """
const root = document.querySelector("main, article, [role=main]") || document.body;
const math = Array.from(root.querySelectorAll(".math"));
const bare = math.filter((e) => !e.querySelector("mjx-container") && !e.closest("mjx-container"));
const copy = root.cloneNode(true);
copy.querySelectorAll("pre, code, script, style, textarea, mjx-container, .highlight").forEach((e) => e.remove());
const text = copy.textContent.replace(/\\s+/g, " ");
const raw = [];
for (const delimiter of ["\\\\(", "\\\\)", "\\\\[", "\\\\]", "$$"]) {
  const at = text.indexOf(delimiter);
  if (at >= 0) raw.push(delimiter + " in \u201c" + text.slice(Math.max(0, at - 30), at + 40).trim() + "\u201d");
}
return {
  math: math.length,
  rendered: root.querySelectorAll("mjx-container").length,
  bare: bare.slice(0, 3).map((e) => e.textContent.trim().slice(0, 60)),
  n_bare: bare.length,
  raw: raw,
};
"""

# Run after the load event: the page's state as the test needs it.
PAGE_STATE = """
const images = Array.from(document.images, (img) => ({
  src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth}));
return {
  title: document.title,
  main: (document.querySelector("main, article, [role=main]") || {innerText: ""}).innerText.trim().length,
  ids: Array.from(document.querySelectorAll("[id], a[name]"), (e) => e.id || e.getAttribute("name")),
  links: Array.from(document.querySelectorAll("a[href]"), (a) => a.href),
  images: images,
  errors: window.__siteErrors || ["error recorder missing: the page replaced window or never ran scripts"],
};
"""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one page of the site."""

    page: str
    kind: str  # "load", "link", "image", "resource", "javascript", "external" or "math"
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


# --------------------------------------------------------------------------------------
# Serving the site and driving the browser
# --------------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A browser that drops a connection when it moves on to the next page is not an error."""


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chromium_driver():
    """Headless Chromium under Selenium, with the system's Chromium and chromedriver."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs the 'browser' extra (selenium)")
    from selenium.webdriver.chrome.service import Service

    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            pytest.skip(f"{path} not found: apt-get install {package} (or set CHROMIUM / CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",               # CI containers run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no other host: see the docstring
    ):
        options.add_argument(argument)
    # The performance log records every request the page makes (Network.requestWillBeSent),
    # including those to other hosts, which fail here.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_RECORDER})
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = chromium_driver()
    try:
        yield driver
    finally:
        driver.quit()


# --------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------


def site_pages(root: Path) -> list[str]:
    """Every HTML page of a built site, as paths relative to ``root``, sorted."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.html")
        if not SKIPPED_DIRECTORIES & set(path.relative_to(root).parts[:-1])
    )


def is_external(url: str, base: str) -> bool:
    return not url.startswith(base)


def own_origin(message: str, base: str) -> bool:
    """Whether a console message concerns the site itself rather than another host."""
    urls = [word for word in message.split() if "://" in word]
    return not urls or any(url.startswith(base) for url in urls)


def console_errors(driver, base: str) -> list[str]:
    """Severe console messages since the last call that concern the site itself.

    A missing ``/favicon.ico`` is left out: the browser asks for it on its own, whatever the
    page says.
    """
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE" and own_origin(entry["message"], base)
        and not entry["message"].startswith(base + "favicon.ico ")
    ]


def requested_urls(driver) -> list[str]:
    """The URLs the browser has requested since the last call (from the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def external_requests(urls: list[str], base: str) -> list[str]:
    """The requests that went to another host than the site (``data:`` and the like are local)."""
    return sorted({
        url for url in urls
        if url.startswith(("http://", "https://", "ws://", "wss://", "//")) and not url.startswith(base)
    })


def load_page(driver, url: str) -> dict:
    """Open ``url``, wait until its images have settled and MathJax has typeset it, and return
    :data:`PAGE_STATE` with the MathJax outcome (``mathjax``) and :data:`MATH_STATE` (``math``)."""
    driver.get(url)
    driver.execute_script("for (const img of document.images) img.loading = 'eager';")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not driver.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every((i) => i.complete);"
    ):
        time.sleep(0.1)
    mathjax = driver.execute_async_script(MATHJAX_DONE)
    state = driver.execute_script(PAGE_STATE)
    state["mathjax"] = mathjax
    state["math"] = driver.execute_script(MATH_STATE)
    return state


def url_status(url: str) -> int:
    """HTTP status of a GET of ``url`` (the local server only)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (a 127.0.0.1 URL)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def math_problems(page: str, state: dict) -> list[Problem]:
    """Unrendered mathematics on a page, from :data:`MATH_STATE` and the MathJax outcome."""
    math, problems = state["math"], []
    if math["n_bare"]:
        problems.append(Problem(
            page, "math",
            f"{math['n_bare']} of {math['math']} math elements not rendered (MathJax: {state['mathjax']}), "
            f"e.g. {math['bare']}"))
    for raw in math["raw"]:
        problems.append(Problem(page, "math", f"raw TeX delimiter {raw}"))
    return problems


def page_problems(page: str, state: dict | None, failure: str | None, base: str, console: list[str],
                  requests: list[str] = (), earlier_images: set[str] = frozenset()) -> list[Problem]:
    """What is wrong with one page, from its state in the browser (the links come later).

    An image that fails is reported once, as an image (the browser also logs it as a failed
    resource, sometimes only after the next page has opened: ``earlier_images`` holds the images
    of the pages opened before, whose failures were reported there); an uncaught exception once,
    from the page's error recorder (the console has it too). A request to another host is
    reported as such, whether or not it failed.
    """
    problems = [Problem(page, "external", f"requests {url}") for url in external_requests(list(requests), base)]
    if state is None:
        return [Problem(page, "load", failure or "the browser could not open it"), *problems]
    problems += math_problems(page, state)
    if not state["title"].strip():
        problems.append(Problem(page, "load", "the page has no title"))
    if not state["main"]:
        problems.append(Problem(page, "load", "the page has no main content"))
    images = {image["src"] for image in state["images"]} | set(earlier_images)
    for image in state["images"]:
        if not is_external(image["src"], base) and (not image["complete"] or image["width"] == 0):
            problems.append(Problem(page, "image", f"{image['src']} did not load"))
    for error in state["errors"]:
        if error.startswith("failed to load img"):
            continue
        if own_origin(error, base):
            kind = "resource" if error.startswith("failed to load") else "javascript"
            problems.append(Problem(page, kind, error))
    for message in console:
        if "Uncaught" in message or any(src in message for src in images):
            continue
        kind = "resource" if "Failed to load resource" in message else "javascript"
        problems.append(Problem(page, kind, message))
    return problems


def link_problems(states: dict[str, dict], base: str) -> list[Problem]:
    """Links from any page to a missing page or file of the site, or to a missing anchor."""
    problems, status = [], {}
    for page, state in states.items():
        for link in state["links"]:
            if is_external(link, base) or not link.startswith(("http://", "https://")):
                continue
            address, _, fragment = link.partition("#")
            target = urllib.parse.unquote(urllib.parse.urlsplit(address).path).lstrip("/")
            if target == "" or target.endswith("/"):
                target += "index.html"
            if target in states:
                ids = set(states[target]["ids"])
                if fragment and urllib.parse.unquote(fragment) not in ids:
                    problems.append(Problem(page, "link", f"{link}: no element with id {fragment!r} on {target}"))
                continue
            if address not in status:
                status[address] = url_status(address)
            if status[address] != 200:
                problems.append(Problem(page, "link", f"{link}: HTTP {status[address]}"))
    return problems


def check_site(root: Path, driver) -> list[Problem]:
    """Serve ``root``, open each of its pages in ``driver``, and list every problem found."""
    problems, states, images = [], {}, set()
    with serve(root) as base:
        for page in site_pages(root):
            state, failure = None, None
            try:
                state = load_page(driver, base + page)
            except Exception as error:  # a timeout or a crashed tab: the page did not load
                failure = f"{type(error).__name__}: {error}".splitlines()[0]
            errors = console_errors(driver, base)
            problems += page_problems(page, state, failure, base, errors, requested_urls(driver), images)
            if state is not None:
                states[page] = state
                images |= {image["src"] for image in state["images"]}
        problems += link_problems(states, base)
    return problems


# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------


def built_site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site at {SITE}: run `make book` first (or set FLIPLIB_SITE)")
    return SITE


def test_every_page_of_the_built_site_works(browser) -> None:
    site = built_site()
    problems = check_site(site, browser)
    assert not problems, f"{len(problems)} problems in {site}:\n" + "\n".join(map(str, problems))


def content_pages(root: Path) -> list[str]:
    """The book's own pages (not the index, search or module index), sorted."""
    return [page for page in site_pages(root) if page.startswith("book/")]


def insert_before_body_end(path: Path, html: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert "</body>" in text, f"{path} has no </body>"
    path.write_text(text.replace("</body>", html + "</body>", 1), encoding="utf-8")


def insert_into_main(path: Path, html: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert "<main" in text, f"{path} has no <main>"
    start = text.index(">", text.index("<main")) + 1
    path.write_text(text[:start] + html + text[start:], encoding="utf-8")


def test_checker_catches_a_deliberately_broken_copy(browser, tmp_path: Path) -> None:
    site = built_site()
    broken = tmp_path / "html"
    shutil.copytree(site, broken)
    pages = content_pages(broken)
    assert len(pages) >= 5, f"too few pages to break: {pages}"
    truncated, thrower, missing_image, dead_link, dead_anchor = pages[:5]
    # 6. a page with mathematics whose MathJax does not load (what a CDN does offline), and
    # 7. a page that asks another host for a style sheet
    with_math = [page for page in pages[5:] if 'class="math' in (broken / page).read_text(encoding="utf-8")]
    assert len(with_math) >= 2, f"too few pages with mathematics to break: {with_math}"
    no_mathjax, cdn = with_math[:2]
    text = (broken / no_mathjax).read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*></script>', text, flags=re.IGNORECASE)
    assert scripts, f"{no_mathjax} loads no MathJax"
    for script in scripts:
        text = text.replace(script, "")
    (broken / no_mathjax).write_text(text, encoding="utf-8")
    insert_before_body_end(broken / cdn, '<link rel="stylesheet" href="https://cdn.example.org/style.css">')

    # 1. a page that does not load: cut to its first bytes
    (broken / truncated).write_bytes((broken / truncated).read_bytes()[:40])
    # 2. a JavaScript error
    insert_before_body_end(broken / thrower, '<script>throw new Error("deliberate failure");</script>')
    # 3. an image that fails to load
    insert_into_main(broken / missing_image, '<img src="../_images/deliberately-missing.png" alt="missing">')
    # 4. a link to a page that does not exist, and 5. to an anchor that does not exist
    insert_into_main(broken / dead_link, '<a href="no-such-page.html">dead</a>')
    insert_into_main(broken / dead_anchor, f'<a href="{Path(dead_link).name}#no-such-anchor">dead anchor</a>')

    problems = check_site(broken, browser)
    found = {(problem.page, problem.kind) for problem in problems}
    expected = {
        (truncated, "load"),
        (thrower, "javascript"),
        (missing_image, "image"),
        (dead_link, "link"),
        (dead_anchor, "link"),
        (no_mathjax, "math"),
        (cdn, "external"),
    }
    assert expected <= found, f"missed: {sorted(expected - found)}; found: {sorted(found)}"
    # Nothing else is reported, except links from other pages into the truncated one.
    damaged = {page for page, _ in expected}
    others = [str(p) for p in problems if p.page not in damaged and Path(truncated).name not in p.detail]
    assert not others, "problems on pages that were not broken:\n" + "\n".join(others)


def test_checker_catches_errors_on_a_minimal_site(browser, tmp_path: Path) -> None:
    """The same checks on a three-page site written here: the checker does not need a build."""
    (tmp_path / "index.html").write_text(
        "<html><head><title>Home</title></head><body><main><p>Home</p>"
        '<a href="good.html#part">good</a> <a href="bad.html">bad</a> <a href="good.html#nowhere">no anchor</a>'
        "</main></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "good.html").write_text(
        '<html><head><title>Good</title></head><body><main><p id="part">Fine</p></main></body></html>',
        encoding="utf-8",
    )
    (tmp_path / "broken.html").write_text(
        '<html><head><title>Broken</title></head><body><main><p>x</p><img src="gone.png">'
        "<script>undefinedFunction();</script></main></body></html>",
        encoding="utf-8",
    )
    # TeX that nothing typesets, a raw delimiter in the text (code may show one), and a font
    # from another host
    (tmp_path / "math.html").write_text(
        '<html><head><title>Math</title><link rel="stylesheet" href="https://fonts.example.org/f.css">'
        '</head><body><main><p>Let <span class="math notranslate">\\(x^2\\)</span>.</p>'
        "<p>Raw $$y$$ here.</p><pre>print(r'\\(code\\)')</pre></main></body></html>",
        encoding="utf-8",
    )
    problems = check_site(tmp_path, browser)
    found = {(problem.page, problem.kind, "nowhere" in problem.detail) for problem in problems}
    assert found == {
        ("index.html", "link", False),   # bad.html does not exist
        ("index.html", "link", True),    # good.html has no #nowhere
        ("broken.html", "image", False),
        ("broken.html", "javascript", False),
        ("math.html", "math", False),
        ("math.html", "external", False),
    }, "\n".join(map(str, problems))
    math = sorted(problem.detail for problem in problems if problem.kind == "math")
    assert len(math) == 4, math  # the bare element; and \(, \), $$ in the text (not those in <pre>)
    assert sum("raw TeX delimiter" in detail for detail in math) == 3, math


LAUNCH_LINK = re.compile(
    r'href="(?:https://mybinder\.org/v2/gh/[^/]+/[^/]+/[^?"]+\?urlpath=lab/tree/'
    r'|https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/)([^"]+)"'
)


def test_launch_buttons_open_the_page_s_own_notebook() -> None:
    """Binder and Colab links of a notebook page name that notebook's path in the repository."""
    site = built_site()
    checked = 0
    for page in content_pages(site):
        targets = set(LAUNCH_LINK.findall((site / page).read_text(encoding="utf-8")))
        notebook = Path(page).with_suffix(".ipynb").as_posix()
        if (ROOT / notebook).is_file():
            assert targets == {notebook}, f"{page}: launch links open {sorted(targets)}, not {notebook}"
            checked += 1
        else:
            assert not targets, f"{page} is not a notebook but has launch links to {sorted(targets)}"
    assert checked, "no notebook page found"


def pages_with_math(root: Path, count: int) -> list[str]:
    pages = [page for page in content_pages(root) if 'class="math' in (root / page).read_text(encoding="utf-8")]
    return pages[:count]


def test_pages_render_their_mathematics_from_the_files_on_disk(browser) -> None:
    """Opened as files (no web server, no network), pages still load MathJax and typeset."""
    site = built_site()
    pages = pages_with_math(site, 3)
    assert pages, "no page with mathematics"
    problems = []
    for page in pages:
        state = load_page(browser, (site / page).resolve().as_uri())
        problems += math_problems(page, state)
        if not state["math"]["rendered"]:
            problems.append(Problem(page, "math", "no MathJax output at all"))
        problems += [Problem(page, "external", url) for url in external_requests(requested_urls(browser), "file://")]
    assert not problems, "\n".join(map(str, problems))


# Measure whether a line of `characters` characters fits the page's code box: a copy of the
# first code cell's <pre>, with such a line, put beside the original (same width, same font).
CODE_FIT = """
const characters = arguments[0];
const pre = document.querySelector("div.cell_input pre, div.highlight pre");
if (!pre) return null;
const probe = pre.cloneNode(false);
probe.textContent = "x".repeat(characters);
pre.parentNode.insertBefore(probe, pre.nextSibling);
const result = {scroll: probe.scrollWidth, client: probe.clientWidth,
                font: getComputedStyle(probe).fontSize, box: pre.getBoundingClientRect().width};
probe.remove();
return result;
"""


@pytest.mark.parametrize("width", [1280, 1440])
def test_an_80_character_code_line_fits_the_code_box(browser, width: int) -> None:
    """The chapters' code is formatted to 80 characters (tests/test_notebooks.py); at the
    book's default layout such a line must show without a horizontal scroll bar."""
    site = built_site()
    notebooks = [page for page in content_pages(site) if (ROOT / page).with_suffix(".ipynb").is_file()]
    assert notebooks, "no notebook page"
    browser.set_window_size(width, 900)
    try:
        with serve(site) as base:
            load_page(browser, base + notebooks[0])
            fit = browser.execute_script(CODE_FIT, 80)
            wider = browser.execute_script(CODE_FIT, 200)
    finally:
        browser.set_window_size(1280, 900)
    assert fit is not None, f"{notebooks[0]} has no code box"
    assert fit["scroll"] <= fit["client"], f"an 80-character line overflows the code box at {width} px: {fit}"
    assert wider["scroll"] > wider["client"], f"the probe cannot fail: 200 characters fit too ({wider})"
