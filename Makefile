# hermes-netd build, test and tooling entry points. Run `make help` for the list.

GO        ?= go
BIN       ?= bin/hermes-netd
PREFIX    ?= /usr/local
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/hermes-netd/hermes-netd/internal/version.Version=$(VERSION)
GOTESTFLAGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets with a one-line description
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/hermes-netd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hermes-netd

.PHONY: generate
generate: ## Regenerate the bpf2go objects from bpf/*.c (needs clang and libbpf-dev)
	$(GO) generate ./bpf/...

.PHONY: check-generate
check-generate: generate ## Fail if the committed BPF objects differ from a fresh generate
	git diff --exit-code -- bpf/

.PHONY: deps
deps: ## Install what the tests need (runs vagrant/provision.sh; root)
	./vagrant/provision.sh

.PHONY: test
test: deps ## Install what is missing, then run every test: unit, privileged, end-to-end
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 $(GOTESTFLAGS) ./...

.PHONY: test-unit
test-unit: ## Run the tests that need no privileges
	$(GO) test -count=1 -short ./...

.PHONY: fuzz
fuzz: ## Fuzz the ClientHello reader for 60 seconds
	$(GO) test -run '^$$' -fuzz FuzzReadClientHello -fuzztime 60s ./proxy/

.PHONY: demo
demo: deps build ## Install what is missing, then run the built-in demo: a sandbox gets its key injected (root)
	$(GO) run ./internal/demo

.PHONY: bench
bench: ## Measure hermes-netd against direct connections and peers (root; BENCH_QUICK=1, BENCH_OUT=f.json)
	$(GO) run ./internal/bench

.PHONY: bench-go
bench-go: ## Run the Go micro-benchmarks (root for the kernel ones)
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: install
install: build ## Install the binary and the systemd unit under $(PREFIX) (root)
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/hermes-netd
	install -D -m 0644 packaging/hermes-netd.service $(DESTDIR)/etc/systemd/system/hermes-netd.service
	install -d -m 0700 $(DESTDIR)/etc/hermes/secrets $(DESTDIR)/var/lib/hermes

.PHONY: clean
clean: ## Remove build output
	rm -rf bin
