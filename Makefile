# `make run`: the daemon on the built-in config (a pty at ./ttyAT0, no hardware).
# `make test`: the whole test suite, then the example plugin's own tests with the
# plugin installed as a third-party package (examples/gatewayd-example-plugin).
# Both create .venv on first use; `make test` first installs the Debian tools
# the suite drives (tools/system-deps.sh).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/gatewayd-example-plugin
EXAMPLE_STAMP := $(VENV)/.example-plugin

.PHONY: run test system-deps lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# Journal output needs systemd-python, which builds against libsystemd.
	if pkg-config --exists libsystemd 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet -e ".[systemd]"; \
	else echo "libsystemd-dev not found: logging to the journal is not built"; fi
	touch $(STAMP)

# Installed as any third-party plugin is (editable, its entry point in group
# "gatewayd"); it then loads in every gatewayd of .venv, and does nothing
# without a [plugin.example] table, so the main suite runs with it installed.
$(EXAMPLE_STAMP): $(STAMP) $(EXAMPLE)/pyproject.toml
	$(BIN)/python -m pip install --quiet -e $(EXAMPLE)
	touch $(EXAMPLE_STAMP)

run: $(STAMP)
	$(BIN)/gatewayd run -c config/gatewayd.toml

# system-deps comes first: systemd-python builds against what it installs.
test: system-deps $(STAMP) $(EXAMPLE_STAMP)
	$(BIN)/python -c 'import systemd.journal' 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet -e ".[systemd]"
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest $(EXAMPLE)/tests

system-deps:
	bash tools/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python bench/at_roundtrip.py

docs: $(STAMP)
	$(BIN)/python -m gatewayd.config --reference > docs/config.md

clean:
	rm -rf $(VENV) build *.egg-info ttyAT0

# `make deb`: dist/gatewayd_<version>_<arch>.deb, a self-contained virtualenv at
# /opt/gatewayd plus the systemd unit (packaging/build-deb.sh; needs PyPI).
.PHONY: deb
deb:
	bash packaging/build-deb.sh dist
