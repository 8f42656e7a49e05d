# runpod-kubelet: every command a newcomer needs. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE ?= $(HOME)/.cache/runpod-kubelet

.PHONY: install control-plane control-plane-up node-packages node image test lint unit bench chaos demo clean help

help:
	@echo "make install        create .venv with the package (editable) and test tools"
	@echo "make control-plane  build etcd + kube-apiserver/scheduler/controller-manager + kubectl (cached)"
	@echo "make control-plane-up  run a local control plane until Ctrl-C (prints its KUBECONFIG)"
	@echo "make node           the worker node's parts: OS packages (apt, as root), pause, CoreDNS (cached)"
	@echo "make image          build the image from the Dockerfile (docker, else buildah); IMAGE=repo:tag PUSH=1 to publish"
	@echo "make test           lint, type-check and run the whole suite against a real control plane"
	@echo "make demo           run the whole system locally on the sandbox RunPod, narrated"
	@echo "make bench          benchmarks (admission latency, binder calls per tick, ...)"
	@echo "make chaos          kill the binder at random during creates/deletes; count leaks"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

control-plane:
	@tools/control-plane/build

node-packages:
	@tools/node/install-packages

node: node-packages
	@tools/node/build

control-plane-up: $(STAMP)
	$(BIN)/python -m controlplane

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	actionlint="$$(tools/actionlint/build)" && "$$actionlint"

test: $(STAMP) node-packages
	@tools/control-plane/build >/dev/null
	@tools/node/build >/dev/null
	@tools/metrics-server/build >/dev/null
	@tools/vk-e2e/build >/dev/null
	@tools/image/build >/dev/null
	@tools/helm/fetch >/dev/null
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m "not cluster" $(PYTEST_ARGS)

bench: $(STAMP)
	@tools/control-plane/build >/dev/null
	$(BIN)/python -m benchmarks

chaos: $(STAMP)
	@tools/control-plane/build >/dev/null
	$(BIN)/python -m benchmarks.chaos

demo: $(STAMP)
	$(BIN)/runpod-kubelet demo $(DEMO_ARGS)

# With a Docker engine: docker build (official base). Without: buildah on a base made locally
# from Debian (no registry needed). Cached by content; prints the reference and the archive.
image:
	@tools/image/build $(if $(IMAGE),--tag $(IMAGE)) $(if $(PUSH),--push)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
