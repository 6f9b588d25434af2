# Everything from nothing: `make demo` and `make test` install what they need (Debian
# packages, the Python virtualenv, the Go builds of Kubernetes, CoreDNS and Helm, the
# local images) and bring the local cluster up. Expensive results are cached in
# $(CACHE) (builds, images) and Go's own caches, so only the first run pays.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/kubefixtures
IMAGES := $(CACHE)/images
export KUBEFIXTURES_IMAGES_DIR := $(IMAGES)
# The local provider unless the caller chose another (kind, existing).
export KUBEFIXTURES_CLUSTER ?= local

HOST_PACKAGES := etcd-server containerd runc containernetworking-plugins iptables conntrack \
	openssl busybox-static redis-server redis-tools gcc libc6-dev iproute2 util-linux \
	postgresql-15 postgresql-client-15 python3.11 python3-pip nodejs docker.io
HOST_STAMP := $(CACHE)/host-packages.stamp
VENV_STAMP := $(VENV)/.installed

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(HOST_STAMP): Makefile
	@mkdir -p $(CACHE)
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: installing packages needs root (sudo make ...)" >&2; exit 1; fi; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# NodeSource's nodejs bundles npm; Debian's does not (and its npm conflicts with NodeSource's).
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
	@touch $@

.PHONY: host-packages
host-packages: $(HOST_STAMP) ## install the Debian packages the local cluster runs on

$(VENV_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## the Python virtualenv in .venv with kubefixtures and its dev tools

.PHONY: images
images: $(HOST_STAMP) ## build the local container images (no registry needed)
	$(PYTHON) -u hack/images/build.py --out $(IMAGES)

.PHONY: tools
tools: $(HOST_STAMP) $(VENV_STAMP) ## build the local cluster's binaries: Kubernetes, CoreDNS, Helm (cached)
	@if [ "$$KUBEFIXTURES_CLUSTER" = local ]; then $(BIN)/kubefixtures cluster build; fi

.PHONY: cluster
cluster: $(HOST_STAMP) $(VENV_STAMP) ## bring the cluster up (builds Kubernetes on the first run)
	@# The images build while Go compiles (two jobs: the first run is shorter by the images').
	@$(MAKE) --no-print-directory -j2 images tools
	$(BIN)/kubefixtures cluster up
	@if [ "$$KUBEFIXTURES_CLUSTER" = local ]; then $(BIN)/kubefixtures cluster load-image $(IMAGES)/*.tar >/dev/null; fi

.PHONY: down
down: $(VENV_STAMP) ## stop the cluster and remove everything it put on the host
	$(BIN)/kubefixtures cluster down

# The demo's session report: a waterfall of every environment's phases (docs/report.md).
DEMO_REPORT := $(CURDIR)/kubefixtures-report.html

.PHONY: demo
demo: cluster ## bring the cluster up, show it, and run the example shop's tests against it
	@echo; $(BIN)/kubefixtures cluster status
	@echo; $(BIN)/kubectl get nodes -o wide
	@echo; cd examples/shop && status=0; \
	  ../../$(BIN)/pytest -p no:cacheprovider -n 2 --kubefixtures-report=$(DEMO_REPORT) || status=$$?; \
	  echo; echo "Look around (namespaces being deleted show as Terminating for a few seconds):"; \
	  echo "  $(BIN)/kubectl get ns -l app.kubernetes.io/managed-by=kubefixtures"; \
	  echo "  $(BIN)/kubefixtures status"; \
	  echo "  the session's timeline, every environment's phases: $(DEMO_REPORT)"; \
	  exit $$status

.PHONY: example
example: cluster ## the example project's tests, two xdist workers
	cd examples/shop && ../../$(BIN)/pytest -p no:cacheprovider -n 2

# kind on this kind of host (cgroup v1, no registry, CAP_SYS_RESOURCE withheld): a dockerd of
# its own, a node image built here, the cluster's kubeconfig apart from ~/.kube/config.
# See docs/clusters.md, "kind without a registry".
KIND_VERSION := v0.33.0
KIND := $(CACHE)/bin/kind-$(KIND_VERSION)/kind
KIND_PACKAGES := docker.io debootstrap
KIND_ENV := PATH="$(dir $(KIND)):$$PATH" DOCKER_HOST=unix:///run/docker-kind.sock \
	KUBECONFIG=$(CACHE)/kind/kubeconfig KUBEFIXTURES_CLUSTER=kind \
	KUBEFIXTURES_KIND_CONFIG=$(CURDIR)/hack/kind/kind-config.yaml

$(KIND):
	GOBIN=$(dir $(KIND)) GOFLAGS="-buildvcs=false -trimpath" go install sigs.k8s.io/kind@$(KIND_VERSION)

.PHONY: kind-image
kind-image: $(HOST_STAMP) $(VENV_STAMP) $(KIND) ## kind's own dockerd and the node image (no registry needed)
	@for p in $(KIND_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p >/dev/null; done
	$(BIN)/python -c 'from pathlib import Path; from kubefixtures.cluster.local.build import ensure_tools; \
	  ensure_tools(Path("$(CACHE)/bin"), Path("$(CACHE)/logs"))'
	hack/kind/dockerd.sh start
	DOCKER_HOST=unix:///run/docker-kind.sock KUBEFIXTURES_CACHE_DIR=$(CACHE) hack/kind/build-node-image.sh

.PHONY: kind-test
kind-test: kind-image images ## on kind: cluster up, load-image, the example on two workers, cluster down
	@mkdir -p $(CACHE)/kind
	$(KIND_ENV) $(BIN)/kubefixtures cluster up
	$(KIND_ENV) $(BIN)/kubefixtures cluster load-image $(IMAGES)/*.tar >/dev/null
	(cd examples/shop && $(KIND_ENV) ../../$(BIN)/pytest -p no:cacheprovider -n 2) \
	  || { $(KIND_ENV) $(BIN)/kubefixtures cluster down; exit 1; }
	$(KIND_ENV) $(BIN)/kubefixtures cluster down
	@# Nothing left behind: no node container, no volume of kind's.
	@left="$$($(KIND_ENV) docker ps -aq --filter label=io.x-k8s.kind.cluster)$$($(KIND_ENV) docker volume ls -q)"; \
	  test -z "$$left" || { echo "kind-test: left behind by cluster down: $$left" >&2; exit 1; }

.PHONY: lint
lint: $(VENV_STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: unit
unit: $(VENV_STAMP) ## the tests that need no cluster (unit and plugin), in under a minute
	$(BIN)/pytest -p no:cacheprovider -n 2 tests/unit tests/plugin

.PHONY: docker-engine
docker-engine: $(HOST_STAMP) ## start dockerd when no Docker engine answers (for app_image(build=...))
	hack/docker-engine.sh $(CACHE)/logs/dockerd.log

.PHONY: test
test: lint cluster docker-engine ## the whole suite against the real cluster, the example, the cluster's own lifecycle, then the example on kind
	$(BIN)/pytest -p no:cacheprovider tests
	cd examples/shop && ../../$(BIN)/pytest -p no:cacheprovider -n 2
	$(BIN)/pytest -p no:cacheprovider lifecycle_tests
	$(MAKE) --no-print-directory kind-test

.PHONY: clean
clean: ## remove the virtualenv (the build cache in $(CACHE) stays)
	rm -rf $(VENV)
