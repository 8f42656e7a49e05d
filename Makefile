# runpod-kubelet: every command a newcomer needs. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE ?= $(HOME)/.cache/runpod-kubelet

.PHONY: install control-plane control-plane-up test lint unit bench chaos demo image clean help

help:
	@echo "make install        create .venv with the package (editable) and test tools"
	@echo "make control-plane  build etcd + kube-apiserver/scheduler/controller-manager + kubectl (cached)"
	@echo "make control-plane-up  run a local control plane until Ctrl-C (prints its KUBECONFIG)"
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

control-plane-up: $(STAMP)
	$(BIN)/python -m controlplane

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	actionlint="$$(tools/actionlint/build)" && "$$actionlint"

test: $(STAMP)
	@tools/control-plane/build >/dev/null
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

image:
	@command -v docker >/dev/null || { echo "no docker engine here; see tests/chart/test_image.py for the same install steps"; exit 1; }
	docker build -t runpod-kubelet:dev .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
