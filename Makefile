# Setup contract: `make run` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= gateway.yaml
ARGS   ?=

.PHONY: run test lint typecheck bench check redis-server promtool clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/gateway run --config $(CONFIG) $(ARGS)

# A real redis-server is needed by the suite: install the distribution's package when we can.
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server from the distribution"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)"; \
	    exit 1; \
	  fi; \
	fi

# promtool checks the alert rules; it comes out of the distribution's prometheus package,
# unpacked into the venv rather than installed, so no Prometheus server is set up on the machine.
promtool: $(BIN)/promtool
$(BIN)/promtool: | $(STAMP)
	@if command -v promtool >/dev/null 2>&1; then ln -sf "$$(command -v promtool)" $@; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  d=$$(mktemp -d) && (cd $$d && apt-get download -qq prometheus >/dev/null 2>&1 || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq prometheus; }) && \
	  dpkg-deb -x $$d/prometheus_*.deb $$d/x && cp $$d/x/usr/bin/promtool $@ && rm -rf $$d; \
	else echo "promtool is missing: install Prometheus's promtool and put it on PATH"; exit 1; fi

test: $(STAMP) redis-server $(BIN)/promtool
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check gateway plugins tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The benchmark (BENCHMARKS.md): wrk drives it and nginx serves the upstream and the proxy hop.
# PEERS=1 adds LiteLLM; BENCH_QUICK=1 is a 2 s smoke run; BENCH_TARGETS=all adds every gateway variant.
.PHONY: bench-tools bench-memory profile
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing from the distribution"; \
	    export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	    { apt-get install -y -qq $$missing >/dev/null || \
	      apt-get install -y -qq $$(echo $$missing | sed 's/nginx-light/nginx/') >/dev/null; }; \
	  else \
	    echo "missing:$$missing. Install them (Debian/Ubuntu: sudo apt-get install -y wrk nginx-light)"; \
	    exit 1; \
	  fi; \
	fi

bench: $(STAMP) bench-tools
	PEERS=$(PEERS) $(BIN)/python -m bench

# RSS with 1,000 and 10,000 idle streams; BENCH_SOAK=600 adds a 10-minute soak.
bench-memory: $(STAMP) bench-tools
	$(BIN)/python -m bench memory

# Where a target's CPU goes: py-spy samples under wrk load (PROFILE_TARGET=gateway-redis, PROFILE_ARGS=--stream or --cpu).
profile: $(STAMP) bench-tools
	@$(BIN)/python -c 'import shutil, sys; sys.exit(0 if shutil.which("py-spy", path="$(BIN)") else 1)' || \
	  $(BIN)/python -m pip install -q py-spy
	@case "$(PROFILE_ARGS)" in *--instructions*) command -v valgrind >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; } || \
	  { echo "valgrind is missing (Debian/Ubuntu: sudo apt-get install -y valgrind)"; exit 1; };; esac
	$(BIN)/python -m bench profile --target $(or $(PROFILE_TARGET),gateway) $(PROFILE_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
