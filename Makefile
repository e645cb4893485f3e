# Two commands do everything: `make demo` and `make test` (see README.md).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
WORLD ?= worlds/demo
RUNS ?= runs

.PHONY: install demo test lint typecheck pytest clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kolfeed world --scale small --seed 7 --out $(WORLD)
	RUN=$$($(BIN)/kolfeed train configs/train/world_als.yaml --set data.path=$(WORLD) --out $(RUNS) | tail -1) && \
	$(BIN)/kolfeed simulate configs/experiments/kol_weight.yaml --world $(WORLD) --run "$$RUN" \
	    --days 1 --users 500 --out var/demo-day
	KOLFEED_EVENTS_PATH=var/demo-day/events.parquet \
	    $(BIN)/kolfeed serve --runs $(RUNS) --store memory:// --port $(PORT) --dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	bash scripts/ensure_redis.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

# Debian's chromium for tests/test_dashboard_browser.py (the tests skip without it; they never install it).
browser:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
