.PHONY: setup demo lint format test test-fast bench
setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

# Formatter and linter (ruff, settings in pyproject.toml); `make format` applies them.
lint: setup
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# The linter, then the whole suite, slow end-to-end tests included (CI runs exactly this).
test: lint
	.venv/bin/python -m pytest -q

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

bench: setup
	.venv/bin/python benchmarks/bench_engine.py
