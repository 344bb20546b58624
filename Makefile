# Two commands on a fresh machine: `make run` (the proxy) and `make test` (lint, types, tests).
# Both create .venv and install what they need first. Python >= 3.12 is required by mitmproxy 12;
# with pyenv, .python-version selects it.

PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
# e.g. MODE=reverse:https://api.openai.com (clients then use base URL http://127.0.0.1:8080/v1)
MODE ?= regular
ARGS ?=

.PHONY: run web test demo fuzz bench soak lint clean collector

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python >= 3.12 is needed (mitmproxy 12); set PYTHON=/path/to/python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

run: $(VENV)/.runtime
	$(BIN)/mitmdump -s addon.py --listen-host 127.0.0.1 --listen-port $(PORT) --mode $(MODE) $(ARGS)

# The flow list gets a comment column: the addon's one line per call.
WEB_PORT ?= 8081
web: $(VENV)/.runtime
	@echo "Open the address mitmweb prints below (http://127.0.0.1:$(WEB_PORT)/?token=...): without its token the UI answers 403. Or ARGS='--set web_password=SECRET'."
	$(BIN)/mitmweb -s addon.py --listen-host 127.0.0.1 --listen-port $(PORT) --mode $(MODE) \
		--web-host 127.0.0.1 --web-port $(WEB_PORT) --set web_columns=icon --set web_columns=path --set web_columns=status \
		--set web_columns=time --set web_columns=comment $(ARGS)

# The Codex CLI for its end-to-end test (npm; the native binary is inside the package).
CODEX := harness/codex/node_modules/.bin/codex
$(CODEX): harness/codex/package.json harness/codex/package-lock.json
	cd harness/codex && npm ci --no-audit --no-fund --silent
	@touch $@

# The Claude Code CLI for its end-to-end test on Bedrock (npm; the native binary comes in the
# platform's optional package).
CLAUDE_CODE := harness/claude-code/node_modules/.bin/claude
$(CLAUDE_CODE): harness/claude-code/package.json harness/claude-code/package-lock.json
	cd harness/claude-code && npm ci --no-audit --no-fund --silent
	@touch $@

# The openai npm package and undici, for the Node end-to-end test.
NODE_CLIENT := harness/node-client/node_modules/.package-lock.json
$(NODE_CLIENT): harness/node-client/package.json harness/node-client/package-lock.json
	cd harness/node-client && npm ci --no-audit --no-fund --silent
	@touch $@

# The project's OpenTelemetry Collector (deploy/collector/builder-config.yaml), built by the
# Collector Builder with the machine's Go; modules come from the Go module proxy on first use and
# stay in Go's caches. OTELCOL=otelcol-contrib (or any path) uses a Collector you have instead.
COLLECTOR := deploy/collector/build/otelcol-genai
$(COLLECTOR): deploy/collector/builder-config.yaml
	cd deploy/collector && go run go.opentelemetry.io/collector/cmd/builder@v0.161.0 --config builder-config.yaml
collector: $(COLLECTOR)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# Three workers, each test module on one (its processes and fixtures stay together): most of an
# end-to-end test's time is waiting for processes, so three share the 2 cores well.
test: lint $(CODEX) $(CLAUDE_CODE) $(NODE_CLIENT) $(if $(OTELCOL),,$(COLLECTOR))
	$(BIN)/python -m pytest -n 3 --dist loadfile

demo: $(VENV)/.dev
	$(BIN)/python -m tools.demo

# The benchmark against bare mitmdump (a few minutes); BENCH_ARGS=--smoke for a quick check.
BENCH_ARGS ?= --report bench/last-report.md
bench: $(VENV)/.dev
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Mixed traffic with collector restarts for SOAK_SECONDS, then exact totals and flat memory.
SOAK_SECONDS ?= 600
soak: $(VENV)/.dev
	$(BIN)/python -m bench.soak $(SOAK_SECONDS)

# A long property-based fuzz run of the protocol layer: FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.dev
	$(BIN)/python -m tools.fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
