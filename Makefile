# Every target installs what it needs into .venv by itself: `make test` works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-stamp

.PHONY: run test test-hil lint fix diagram docs bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## a whole simulated car and its cloud, to drive in the browser: kagi sim run (docs/live.md)
PORT ?= 8000
run: $(STAMP)
	$(VENV)/bin/kagi sim run --port $(PORT)

## the test command (README): every test, the HIL scenarios on the sim rig included
test: $(STAMP)
	$(PY) -m pytest -q

## the HIL scenarios alone, on a rig file of tools/rig/rigs/ or a path (RIG=sim by default;
## sim-prod: PostgreSQL and Mosquitto over TLS)
RIG ?= sim
test-hil: $(STAMP)
	$(PY) -m pytest -q hil_tests --rig $(RIG)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(MAKE) lint-boards

## the board code against the MicroPython stubs of each port (boards/mypy-<port>.ini)
.PHONY: lint-boards
$(VENV)/typings-%/.installed: $(STAMP)
	$(PY) -m pip install --quiet --upgrade --target $(VENV)/typings-$* 'micropython-$*-stubs>=1.29,<1.30'
	touch $@

lint-boards: $(VENV)/typings-rp2/.installed $(VENV)/typings-esp32/.installed
	$(VENV)/bin/mypy --config-file boards/mypy-rp2.ini
	$(VENV)/bin/mypy --config-file boards/mypy-esp32.ini

fix: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## the state diagram, generated from the machine definition
diagram: $(STAMP)
	$(PY) -m firmware.diagram > docs/trip-states.md

## generated documentation: the state diagram and the API's OpenAPI document
docs: diagram
	$(PY) -m cloud.openapi > docs/openapi.json

## latency figures (printed, not asserted)
bench: $(STAMP)
	@for b in benchmarks/[a-z]*.py; do $(PY) -m benchmarks.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .kagi-run
