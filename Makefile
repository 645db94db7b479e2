# Two commands set up everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
export STREAMAPP_DATA_DIR ?= ./var/$(or $(STREAMAPP_ID),streamapp)
# faust runs its worker on uvloop (9 % less CPU per interaction than asyncio's loop, 17 % for
# a bare agent: docs/performance.md); every target (run, test, bench, soak) uses the same.
export FAUST_LOOP ?= uvloop

.PHONY: run serve test soak lint format schemas kafka-start kafka-stop clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

## Start a local broker unless KAFKA_BROKER is set, then the worker in the foreground.
## The worker finds that broker itself, from KAFKA_LOCAL_PORT (not exported as KAFKA_BROKER,
## so its messages name the variable the user actually set).
run: $(STAMP)
	@if [ -z "$$KAFKA_BROKER" ]; then \
	  scripts/kafka-local.sh start >/dev/null || exit 1; \
	fi; \
	echo "worker: broker $${KAFKA_BROKER:-kafka://127.0.0.1:$${KAFKA_LOCAL_PORT:-9092}}, web http://$${WEB_HOST:-127.0.0.1}:$${WEB_PORT:-6066}"; \
	exec $(VENV)/bin/faust -A streamapp.app worker -l info

## A serving process beside the worker of `make run` (README: Serving processes).
serve: $(STAMP)
	@exec $(PY) -m streamapp.serve

## Lint, format check, layer contracts, then every test (a local broker is started when none
## is configured).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -ra --durations=10 $(PYTEST_ARGS)

## The SIGKILL scenario in rounds (20 by default, ROUNDS=n), a CPU hog beside every second
## round; prints how many rounds were exact. Each round takes about 1.5 minutes.
ROUNDS ?= 20
soak: $(STAMP)
	$(PY) scripts/soak.py --rounds $(ROUNDS)

## Lint, format check and the layer contracts of setup.cfg (import-linter).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Regenerate schemas/ from the pydantic models.
schemas: $(STAMP)
	$(PY) -m streamapp.schemas

kafka-start:
	scripts/kafka-local.sh start

kafka-stop:
	scripts/kafka-local.sh stop

clean:
	rm -rf var build *.egg-info

## Benchmarks (docs/performance.md) against a broker of their own on 127.0.0.1:$(BENCH_KAFKA_PORT),
## one at a time per port, the broker stopped at the end whatever happens. py-spy (profiles
## only) goes into the venv, not setup.cfg.
BENCH_KAFKA_PORT ?= 29092
.PHONY: bench bench-quick
bench bench-quick: $(STAMP)
	@test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q --disable-pip-version-check py-spy \
	  || echo "bench: py-spy could not be installed; running without a profile"
	@exec 8>/tmp/streamapp-bench-$(BENCH_KAFKA_PORT).lock; \
	  flock -n 8 || { echo "bench: another benchmark is using 127.0.0.1:$(BENCH_KAFKA_PORT);" \
	    "wait for it or set BENCH_KAFKA_PORT" >&2; exit 1; }; \
	  trap 'KAFKA_LOCAL_PORT=$(BENCH_KAFKA_PORT) scripts/kafka-local.sh stop' EXIT; \
	  BENCH_LOCK_HELD=$(BENCH_KAFKA_PORT) BENCH_KAFKA_PORT=$(BENCH_KAFKA_PORT) \
	  $(PY) -m bench.run $(if $(filter bench-quick,$@),--quick) $(BENCH_ARGS)

## Demo data: a catalogue, then RATE interactions/s (starts a broker and a worker if needed).
RATE ?= 200
.PHONY: demo
demo: $(STAMP)
	RATE=$(RATE) $(PY) -m streamapp.demo
