# Thin wrappers: each target installs what it needs (uv, then the locked dependencies).
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen

.PHONY: demo test dev bench bench-scale lint install

$(UV):
	@echo "uv not found: installing it from PyPI into ~/.local"
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet --break-system-packages --user uv

# Bytecode is compiled at install: every process (CLI, run workers, code server) then imports
# in a few seconds even where PYTHONDONTWRITEBYTECODE keeps Python from caching it.
install: $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode
	$(UV) run --frozen python -m compileall -q sigmasight_pipeline > /dev/null

demo: install
	$(RUN) sigmasight demo

test: install
	$(RUN) ruff check .
	$(RUN) pytest -q -n 2 --durations=15

dev: install
	$(RUN) sigmasight dev

bench: install
	$(RUN) python -m sigmasight_pipeline.benchmarks

# Long (an hour or more): the 90-day backfill on books of 100, 300 and 1,000 portfolios and on
# today's design (commit e5233ee) with 100; replaces only the `## scale` section of BENCHMARKS.md.
# `make bench-scale SIZES=100,300` measures only those books.
bench-scale: install
	UV=$(UV) SIGMASIGHT_SCALE_SIZES=$(SIZES) $(RUN) python -m sigmasight_pipeline.benchmarks --update scale

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
