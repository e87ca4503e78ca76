# idlegate: `make demo` runs the flagship keepalive story, `make test` runs every test.
# Both install what they need (Go modules; Debian packages through deps.sh).
GO       ?= go
BIN      := bin/idlegate
FUZZTIME ?= 10s
# Packages with fuzz targets and the targets in each, run for FUZZTIME each by `make test`.
FUZZ_TARGETS := \
	./packet:FuzzDecode ./packet:FuzzParseIPv4 ./packet:FuzzParseIPv6 ./packet:FuzzParseTCP \
	./packet:FuzzParseUDP ./packet:FuzzParseICMP ./packet:FuzzBuilders ./packet:FuzzRewrite \
	./policy:FuzzEngine

.PHONY: all build deps test unit fuzz fuzz-short bench lint demo clean

all: build

deps:
	@bash ./deps.sh
	@$(GO) mod download

build: deps
	$(GO) build -o $(BIN) ./cmd/idlegate

# Unit tests run as any user; the namespace tests need root and never skip when CI=true.
test: build lint
	$(GO) test -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz-short

unit:
	$(GO) test -count=1 ./packet ./conntrack ./policy

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test $$pkg -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME); \
	done

bench: build
	$(GO) test -run='^$$' -bench=. -benchmem ./packet ./conntrack ./policy

demo: build
	./$(BIN) demo

clean:
	rm -rf bin
