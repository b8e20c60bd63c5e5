# `make run`: set up everything and run the default pipeline; `make test`: set up everything and run the tests.
# For developers: `make test-fast` (the tests not marked slow, see tests/conftest.py), `make lint` (ruff).
.PHONY: setup run test test-fast bench lint

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
