# Outpost build, test and lint entry points. CI runs .ci/run, which calls
# `make lint` and `make test`; nothing here relies on tools installed by hand.

GO       ?= go
BIN      := bin
TOOLS    := $(CURDIR)/$(BIN)/tools
FUZZTIME ?= 10s

# Build tags the lint tools see, so integration tests are linted too.
LINT_TAGS ?= integration

# Lint tools, pinned. Each was built with Go 1.26.8 and run on a module using
# Go 1.26 features (new(expr), range-over-func, generic aliases).
#   staticcheck v0.8.2 (2026.2.2): includes the `unused` checks (U1000).
#   errcheck v1.30.0, ineffassign v0.2.0.
STATICCHECK_VERSION := v0.8.2
ERRCHECK_VERSION    := v1.30.0
INEFFASSIGN_VERSION := v0.2.0

# Each tool lives in a directory named by its version, so a version bump (or a
# deleted binary) makes `make tools` install it again, and nothing else does.
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
ERRCHECK    := $(TOOLS)/errcheck-$(ERRCHECK_VERSION)/errcheck
INEFFASSIGN := $(TOOLS)/ineffassign-$(INEFFASSIGN_VERSION)/ineffassign

# errcheck reports every unchecked error, `defer f.Close()` included. If the
# project decides some calls may go unchecked, list them (one per line, e.g.
# `(*os.File).Close`) in .errcheck-excludes and they are passed with -exclude.
ERRCHECK_EXCLUDES := $(wildcard .errcheck-excludes)

# Static binaries for FROM-scratch images and for copying onto edge devices.
GO_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w'

SERVER_IMAGE ?= outpost/server:local
AGENT_IMAGE  ?= outpost/agent:local
CA_BUNDLE    ?= /etc/ssl/certs/ca-certificates.crt

.DEFAULT_GOAL := build

.PHONY: build run test deps test-short bench bench-protocol bench-fleet bench-wire bench-agent fuzz lint tools image clean

build:
	$(GO_BUILD) -o $(BIN)/outpost-server ./cmd/outpost-server
	$(GO_BUILD) -o $(BIN)/outpost-agent ./cmd/outpost-agent
	$(GO_BUILD) -o $(BIN)/outpost-compose ./cmd/outpost-compose

# make run BIND=:9444 TUNNEL_ADDR=:8001 changes the ports.
BIND        ?= :9443
TUNNEL_ADDR ?= :8000

run: build
	$(GO_BUILD) -o $(BIN)/runlocal ./internal/tools/runlocal
	bash scripts/run.sh -bind '$(BIND)' -tunnel-addr '$(TUNNEL_ADDR)'

# Everything, real components included (Docker, kube-apiserver, browser, ...).
# First installs the Debian packages the tests need, when any is missing;
# without root it says so, and the tests that need them skip (fail under CI).
test: deps
	$(GO) test -tags integration -count=1 -timeout 30m ./...

deps:
	@bash scripts/ci-deps.sh || echo "make: could not install the test dependencies; the tests that need them will say what is missing"
	@bash scripts/kube.sh >/dev/null || echo "make: could not build kube-apiserver (scripts/kube.sh); the Kubernetes tests will say what is missing"

# Unit tests only: no integration tag, and -short for anything slow left over.
test-short:
	$(GO) test -short -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-protocol:
	$(GO) run ./internal/tools/benchprotocol

# The agent's resident memory, idle for IDLE and during a stack deploy, the
# real binaries against a real server on the local engine.
IDLE ?= 10m
bench-agent: build
	$(GO) run ./internal/tools/benchagent -bin $(BIN) -idle $(IDLE)

# Bytes on the wire per exchange and per day, Outpost beside the Portainer
# way, at the socket and at the IP layer (root: network namespaces and
# nftables counters).
bench-wire:
	@bash scripts/ci-deps.sh
	$(GO) run ./internal/tools/benchwire

# A fleet of simulated async and standard devices, tunnels and an edge
# stack against a fresh server (outpost-sim, scripts/bench-fleet.sh); the
# report goes into bench-fleet/. DEVICES=, STANDARD=, TUNNELS=,
# STACK_GROUP=, FREQ=, POLL_FREQ=, DURATION=, COMMANDS= change the preset.
bench-fleet:
	$(GO_BUILD) -o $(BIN)/outpost-server ./cmd/outpost-server
	$(GO_BUILD) -o $(BIN)/outpost-sim ./cmd/outpost-sim
	BIN=$(BIN) bash scripts/bench-fleet.sh

# Every Fuzz target in the module, one at a time, FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

# Install the pinned lint tools into bin/tools. `go install mod@version` does
# not touch go.mod.
tools: $(STATICCHECK) $(ERRCHECK) $(INEFFASSIGN)

$(STATICCHECK):
	GOBIN=$(@D) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(ERRCHECK):
	GOBIN=$(@D) $(GO) install github.com/kisielk/errcheck@$(ERRCHECK_VERSION)

$(INEFFASSIGN):
	GOBIN=$(@D) $(GO) install github.com/gordonklaus/ineffassign@$(INEFFASSIGN_VERSION)

# Runs every check even when an earlier one fails, so one run reports all
# problems; fails at the end if any check failed. ineffassign has no -tags
# flag, so it gets the tags through GOFLAGS.
lint: tools
	@rc=0; \
	echo '--- gofmt -l'; \
	unformatted=$$(find . -path ./.git -prune -o -path ./$(BIN) -prune -o -name '*.go' -type f -exec gofmt -l {} +); \
	if [ -n "$$unformatted" ]; then echo "not gofmt'ed (run gofmt -w):"; echo "$$unformatted"; rc=1; fi; \
	echo '--- go vet'; \
	$(GO) vet -tags '$(LINT_TAGS)' ./... || rc=1; \
	echo '--- staticcheck (includes unused)'; \
	$(STATICCHECK) -tags '$(LINT_TAGS)' ./... || rc=1; \
	echo '--- errcheck'; \
	$(ERRCHECK) -tags '$(LINT_TAGS)' $(if $(ERRCHECK_EXCLUDES),-exclude $(ERRCHECK_EXCLUDES)) ./... || rc=1; \
	echo '--- ineffassign'; \
	GOFLAGS="$$GOFLAGS -tags=$(LINT_TAGS)" $(INEFFASSIGN) ./... || rc=1; \
	if [ $$rc -ne 0 ]; then echo 'lint: FAILED'; else echo 'lint: ok'; fi; \
	exit $$rc

# Images FROM scratch (nothing can be pulled here). Each is built from a
# throwaway context holding only the static binary and rootfs/: the CA bundle
# and an empty /tmp (scratch has none; os.TempDir expects it). COPY keeps the
# 1777 mode of a directory inside the copied tree, not of the copied root
# itself, hence rootfs/ rather than a bare tmp/.
image: build
	@set -e; \
	ctx=$$(mktemp -d); trap 'rm -rf "$$ctx"' EXIT; \
	for name in server agent; do \
		dir="$$ctx/$$name"; \
		mkdir -p "$$dir/rootfs/tmp" "$$dir/rootfs/etc/ssl/certs"; \
		chmod 1777 "$$dir/rootfs/tmp"; \
		cp $(CA_BUNDLE) "$$dir/rootfs/etc/ssl/certs/ca-certificates.crt"; \
		cp $(BIN)/outpost-$$name "$$dir/outpost-$$name"; \
		if [ $$name = agent ]; then cp $(BIN)/outpost-compose "$$dir/outpost-compose"; fi; \
		cp build/$$name.Dockerfile "$$dir/Dockerfile"; \
		if [ $$name = server ]; then tag=$(SERVER_IMAGE); else tag=$(AGENT_IMAGE); fi; \
		echo "--- docker build -t $$tag (build/$$name.Dockerfile)"; \
		docker build -t $$tag "$$dir"; \
	done

clean:
	rm -rf $(BIN)
	find . -path ./.git -prune -o -name '*.test' -type f -exec rm -f {} +
