# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make book   -> .venv with fliplib[tf,book,test], then the executed site in _build/html
#   make test   -> the same .venv, then the test suite
# and, after `make book`, `make browser-test` opens every page of _build/html in headless Chromium
# (Debian: apt-get install chromium chromium-driver), with the network blocked.
# `make run-path-test` installs the checkout into a fresh virtual environment with the
# chapters' own install line (fliplib[book,tf]) and runs every chapter's set-up and imports.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.installed-browser

.PHONY: book test browser-test run-path-test screenshot lab bench bench-relu bench-rows bench-global bench-reference bench-chapters clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[tf,book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fliplib)" >/dev/null
	touch $(STAMP)

# Every build executes every notebook from scratch: an empty cache, filled two notebooks at a
# time (book/_ext/execute_chapters.py), then the site built from it.
book: $(STAMP)
	rm -rf _build/.jupyter_cache
	$(BIN)/python book/_ext/execute_chapters.py
	$(BIN)/jupyter-book build . --builder html -W --keep-going

# The tests are independent and mostly single-threaded: one worker per core (pytest-xdist), at
# most four (each worker loads TensorFlow).
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses 4

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[browser]"
	touch $(BROWSER_STAMP)

browser-test: $(BROWSER_STAMP)
	@test -f _build/html/index.html || { echo "no _build/html: run 'make book' first"; exit 1; }
	$(BIN)/python -m pytest -m browser tests/browser

# Every chapter's first two code cells (set-up and imports) in a fresh virtual environment
# that holds only what the set-up cell's install line installs (fliplib[book,tf]), installed
# from this checkout; see tests/run_paths.py.
run-path-test: $(STAMP)
	$(BIN)/python tests/run_paths.py

# The README's picture of the built site (docs/screenshot.png).
screenshot: $(BROWSER_STAMP)
	$(BIN)/python tests/browser/screenshot.py

lab: $(STAMP)
	$(BIN)/jupyter lab book/

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_flip.py

bench-relu: $(STAMP)
	$(BIN)/python benchmarks/bench_relu.py

bench-rows: $(STAMP)
	$(BIN)/python benchmarks/bench_rows.py

bench-global: $(STAMP)
	$(BIN)/python benchmarks/bench_global.py --check-resolution 2

bench-reference: $(STAMP)
	$(BIN)/python benchmarks/bench_reference.py

# Paper-scale CPU time of chapters 3, 4, 5 and 7, extrapolated from small sizes; writes the table
# that book/teaching.md includes (benchmarks/results/chapter_times.md).
bench-chapters: $(STAMP)
	$(BIN)/python benchmarks/bench_chapters.py

clean:
	rm -rf _build
