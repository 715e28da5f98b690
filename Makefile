.PHONY: setup demo test test-fast bench
setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

# The whole suite, slow end-to-end tests included (CI runs exactly this).
test: setup
	.venv/bin/python -m pytest -q

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

bench: setup
	.venv/bin/python benchmarks/bench_engine.py
