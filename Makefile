GO ?= go
BIN := bin/appliveryfs

.PHONY: build test vet demo bench clean

# -buildvcs=true stamps the revision that `appliveryfs version` prints, even
# where the environment sets GOFLAGS=-buildvcs=false (a flag beats GOFLAGS).
build:
	$(GO) build -buildvcs=true -o $(BIN) .

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	# iOS teams work on Macs: everything must build for macOS too.
	GOOS=darwin $(GO) build ./...
	GOOS=darwin $(GO) vet ./...

# All tests: unit tests and real-mount integration tests (needs root and /dev/fuse).
test: vet
	# -count=1: the integration tests build the binary themselves, which the
	# test cache cannot see; a cached pass could hide a broken binary.
	$(GO) test -race -count=1 -timeout 12m ./...

# Mount the built-in emulator's sample data; Ctrl-C unmounts.
demo: build
	./$(BIN) demo $(MOUNTPOINT)

# Throughput, latency and memory against baselines measured in the same run.
bench: build
	$(GO) run ./integration/bench --bin $(BIN) $(BENCH_ARGS)

clean:
	rm -rf bin
