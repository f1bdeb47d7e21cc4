# `make demo` runs reseal on the built-in sample images; `make test` runs the whole suite.
# Both set up everything first (Debian packages, .venv).
.PHONY: setup demo test lint bench clean

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup
	.venv/bin/python -m pytest -q -n 2 --timeout=900

lint: setup
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/mypy

bench: setup
	.venv/bin/python bench/run_all.py

clean:
	rm -rf build .pytest_cache demo-out
