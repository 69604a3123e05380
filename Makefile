# tapbeat build, test and demo entry points. See README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

# Fuzz targets run briefly by `make test`: package:FuzzName
FUZZ_TARGETS ?= ./capture:FuzzParseHeader ./capture:FuzzControlDecoder \
                ./lanzone/wire:FuzzReadFrame ./sensor/alert/syslog:FuzzAppend \
                ./sensor/alert:FuzzRELPFrame ./sensor/alert:FuzzDecodeEvent \
                ./appliance/config:FuzzCmdline ./sensor/safetext:FuzzString
# A count, not a duration: a duration-based -fuzztime can end in a spurious
# "context deadline exceeded" failure on a loaded machine (a race in the
# fuzzing coordinator of Go 1.26, fixed in Go 1.27).
FUZZ_TIME    ?= 100000x

# Packages whose tests `make test` runs a second time under the race
# detector (the lab end-to-end and appliance image tests drive other
# processes, which the detector does not see into).
RACE_PKGS ?= ./sensor/ ./sensor/alert/... ./sensor/history/ ./sensor/api/ ./sensor/lab/ \
             ./sensor/daemon/ ./lanzone/... ./capture/ ./cmd/...

.PHONY: all build test race fuzz-short bench bench-capture bench-lanzone bench-fleet bench-history demo clean vet pgo FORCE packages

all: build

build: bin/tapbeat bin/tapbeat-agent

bin/%: FORCE
	@mkdir -p bin
	$(GOBUILD) -o $@ ./cmd/$*

# go vet, then staticcheck (a `go tool` pinned in go.mod).
vet:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Every test, privileged ones included (run as root, which also installs
# the Debian packages they need: .ci/install-deps), then the race
# detector's pass, the short fuzz runs, and one summary line.
test: build vet
	@.ci/install-deps test
	@mkdir -p build
	@rc=0; \
	$(GO) tool gotestsum --format testname --jsonfile build/test.json -- \
		-count=1 -timeout 18m ./... || rc=$$?; \
	$(MAKE) --no-print-directory race || rc=1; \
	$(MAKE) --no-print-directory fuzz-short || rc=1; \
	.ci/summary build/test.json || rc=1; \
	exit $$rc

race:
	$(GO) test -race -count=1 $(RACE_PKGS)

fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in $$pkg, -fuzztime $(FUZZ_TIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZ_TIME) $$pkg || exit 1; \
	done

# The demo: a namespace lab with a mirror port, five endpoints and agents,
# a scenario that raises every alert, forensic queries, teardown (root;
# installs the Debian packages the lab needs first).
demo: build
	@.ci/install-deps demo
	bin/tapbeat demo --bin bin

# Go benchmarks of every part; the load tools below measure whole processes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./sensor/ ./lanzone/wire/ ./capture/
	$(GO) test -run '^$$' -bench 'Ingest$$' -benchtime 5x ./sensor/history/
	$(GO) test -run '^$$' -bench 'DeliveryTCP|Stage' -benchmem -benchtime 100000x ./sensor/alert/

# Offline replay against tcpdump, then live capture of a tcpreplay stream (root).
bench-capture: build
	capture/internal/synth/bench-offline.sh build/synth-4m.pcap 5
	capture/internal/synth/bench-live.sh build/synth-2m.pcap 1

# Records cmd/tapbeat/default.pgo, the CPU profile of live capture that
# builds of the sensor are optimised with (root).
pgo:
	capture/internal/synth/profile-live.sh cmd/tapbeat/default.pgo 30

# Many agents from one process against a real sensor (root).
bench-lanzone:
	$(GO) run ./lanzone/loadtest -count 19000 -reference 1000

# Three `tapbeat run` sensors forming a fleet on loopback, 17,000 simulated
# endpoints each from one simulator process per sensor, restarts of one
# sensor (root; about 15 minutes).
bench-fleet: bin/tapbeat
	$(GO) run ./sensor/fleet/internal/fleetload -bin bin/tapbeat -count 17000 -reference 1000

# 90 days of synthetic history for 10,000 endpoints, then query latencies.
bench-history: build
	$(GO) run ./sensor/history/internal/histbench gen --dir build/hist --endpoints 10000 --days 90
	$(GO) run ./sensor/history/internal/histbench query --dir build/hist --cli bin/tapbeat

# .deb and .rpm packages of tapbeat and tapbeat-agent in build/packages,
# versioned from git (appliance/packages, nfpm); the binaries report the
# same version.
packages:
	@v=$$($(GO) run ./appliance/packages -print-version) && \
	$(MAKE) --no-print-directory build VERSION=$$v && \
	$(GO) run ./appliance/packages -bin bin -out build/packages -version $$v

clean:
	rm -rf bin build

FORCE:

include appliance/iso.mk
