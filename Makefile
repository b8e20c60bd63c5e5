# `make run`: set up everything and run the default pipeline; `make test`: set up everything and run the tests.
# For developers: `make test-fast` (the tests not marked slow, see tests/conftest.py), `make lint` (ruff),
# `make constraints` (rewrite constraints.txt from what is installed in .venv, on purpose only).
.PHONY: setup run test test-fast bench lint constraints

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/sis manager config/exp.py -r

test: setup
	.venv/bin/python -m pytest -q tests

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow" tests

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done

# The pins of constraints.txt from .venv (its header comment kept); torch without its local "+cpu" label,
# no nvidia-* packages (a CPU-only torch does not need them, and pip could not install them here).
constraints:
	{ sed -n '/^#/p' constraints.txt; .venv/bin/pip freeze --exclude-editable \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | grep -v '^nvidia-'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
