# Spillway — make targets. Tools are pinned in go.mod `tool` lines.
SHELL := /usr/bin/env bash
K8S_VERSION ?= 1.37.2
K8S_BIN ?= $(CURDIR)/bin/k8s-v$(K8S_VERSION)
BIN ?= $(CURDIR)/bin
GO ?= go
export GOFLAGS ?= -buildvcs=false

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-18s %s\n",$$1,$$2}'

.PHONY: k8s
k8s: ## Build etcd, kube-apiserver, kube-controller-manager and kubectl from source into bin/k8s-v$(K8S_VERSION) (once).
	K8S_VERSION=$(K8S_VERSION) hack/build-k8s.sh $(K8S_BIN)

.PHONY: generate
generate: ## Generate deepcopy code.
	$(GO) tool controller-gen object:headerFile=hack/boilerplate.go.txt paths=./apis/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC into config/.
	$(GO) tool controller-gen crd:maxDescLen=512 paths=./apis/... output:crd:artifacts:config=config/crd/bases
	$(GO) tool controller-gen rbac:roleName=spillway-manager paths=./pkg/controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: build
build: ## Build Spillway's binaries into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: verify
verify: generate manifests ## Regenerate and fail if the tree changed.
	@$(GO) mod tidy
	@if [[ -n "$$(git status --porcelain)" ]]; then echo "the tree changed after regenerating:"; git status --porcelain; git --no-pager diff --stat; exit 1; fi

.PHONY: test-unit
test-unit: ## Unit tests (no control plane).
	$(GO) test -short ./...

.PHONY: test
test: k8s ## Unit and integration tests against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS=$(K8S_BIN) $(GO) test -count=1 -timeout 30m ./...

.PHONY: bench
bench: ## Benchmarks.
	KUBEBUILDER_ASSETS=$(K8S_BIN) $(GO) test -run '^$$' -bench . -benchmem ./...
bench-gateway: ; hack/bench-gateway/bench.sh $(BENCH_ARGS) ## Gateway vs direct and nginx (req/s, added p50/p99, RSS at 1,000 streams, routing quality); ratios printed.

.PHONY: up
up: k8s build ## Start the local hybrid cluster with its defaults (see docs/local-cluster.md).
	$(BIN)/spillway up

.PHONY: down
down: ## Stop the local cluster (keeps its state; `bin/spillway down --wipe` removes it).
	$(BIN)/spillway down
