# Quick start: `make run` runs every case, `make test` runs the tests. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip on this kind of machine finds a CPU build of torch 2.13.0 on disk; an unpinned torch in a
# fresh venv would resolve to a multi-GB CUDA build, so torch is pinned and installed first.
TORCH ?= torch==2.13.0

.PHONY: run test browser mutate lint typecheck docs bench clean
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/gradcase run

test: $(BIN)/.installed browser
	$(BIN)/python -m pytest -q

# tests/test_formats.py renders the HTML report in headless chromium. Where none is installed,
# install Debian's package (about 50 s once, apt-get update included) as root or with sudo -n;
# where that cannot be done, say so: the test then skips with a reason that says what was not
# tested (it never fails for want of a browser).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	command -v google-chrome >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "make browser: chromium not installed, and no root or sudo to install it"; exit 0; fi; \
	  command -v apt-get >/dev/null || { echo "make browser: chromium not installed, no apt-get"; exit 0; }; \
	  echo "make browser: installing chromium (apt-get) for the HTML report's test"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium >/dev/null || echo "make browser: apt-get could not install chromium"; }

# Would the cases catch a wrong rule? Mutants of every rule the cases use; exit 1 on a survivor.
mutate: $(BIN)/.installed
	$(BIN)/python -m runner mutate cases

lint: $(BIN)/.installed
	$(BIN)/ruff check runner schemas tests benchmarks examples
	$(BIN)/ruff format --check runner schemas tests benchmarks examples
	$(BIN)/mypy

docs: $(BIN)/.installed
	$(BIN)/gradcase ops --markdown > docs/ops.md
	$(BIN)/gradcase schema > schemas/case.schema.json
	$(BIN)/gradcase schema --report > schemas/report.schema.json

# Issue 11: gradcase against hand-written scripts (ratios, medians); writes benchmarks/README.md.
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) reports
