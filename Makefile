# Quick start: `make run` runs every case, `make test` runs the tests. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip on this kind of machine finds a CPU build of torch 2.13.0 on disk; an unpinned torch in a
# fresh venv would resolve to a multi-GB CUDA build, so torch is pinned and installed first.
TORCH ?= torch==2.13.0

.PHONY: run test mutate lint typecheck docs bench clean
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/gradcase run

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

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

clean:
	rm -rf $(VENV) reports
