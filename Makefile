# Two set-up commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
DEMO_ARGS ?= --network builtin --device cpu

.PHONY: demo test install lint clean options-table

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the project metadata changes (stamp files per extra). pip prints what
# it collects and installs (minutes on a fresh clone: torch is large).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing bids_recon and its dependencies into $(VENV) ..."
	$(BIN)/pip install --progress-bar off -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "Installing bids_recon with its test dependencies into $(VENV) ..."
	$(BIN)/pip install --progress-bar off -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

demo: $(VENV)/.installed
	@test -f $(DEMO)/ds/dataset_description.json || $(BIN)/bids_recon-simulate $(DEMO)/ds --size small
	$(BIN)/bids_recon $(DEMO)/ds $(DEMO)/out participant -w $(DEMO)/work $(DEMO_ARGS)
	$(BIN)/bids_recon $(DEMO)/ds $(DEMO)/out group
	@echo "Group report: $(abspath $(DEMO)/out/group.html)"

# Tests marked slow (end-to-end runs of minutes) run only with SLOW=1, as CI does (.ci/run).
# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
SLOW ?=
test: $(VENV)/.installed-test
	$(BIN)/pytest -q $(if $(SLOW),,-m "not slow"); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# README's options table is generated from bids_recon/options.py (a test checks they agree).
options-table: $(VENV)/.installed
	$(BIN)/python -c "from pathlib import Path; from bids_recon.options import update_readme; update_readme(Path('README.md'))"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check bids_recon tests bench

clean:
	rm -rf $(DEMO) .pytest_cache
