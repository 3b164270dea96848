# Podium — the two commands a new user needs are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test lint typecheck pytest bench bench-gateway clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh scripts/install-local-models.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	bash scripts/install-system-deps.sh
	bash scripts/install-local-models.sh $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/podium demo --only customer_service --repeat 1
	$(BIN)/podium serve --workflows examples --config examples/gateway/gateway.yaml

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: install
	bash benchmarks/run.sh

bench-gateway: install
	bash benchmarks/run.sh gateway

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
