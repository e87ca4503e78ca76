# idlegate: `make demo` runs the flagship keepalive story, `make test` runs every test.
# Both install what they need (Go modules; Debian packages through deps.sh).
GO       ?= go
BIN      := bin/idlegate
# The version `idlegate version`, /v1/version and idlegate_build_info report: git describe
# of this tree; a build outside git falls back to the module version, else "devel".
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS  := -X github.com/idlegate/idlegate/internal/version.stamp=$(VERSION)
# Every fuzz target in the tree, as ./pkg:FuzzName, found in the test files so that a
# new one runs without being listed here. `make fuzz` runs each for FUZZTIME; `make
# test` for FUZZTIME_SHORT, the CI budget.
FUZZTIME       ?= 45s
FUZZTIME_SHORT ?= 10s
FUZZ_TARGETS := $(shell grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | \
	sed -E 's|^[.]/(.*)/[^/]*:func |./\1:|' | sort)
# TARGET=LIMIT bounds how long each new interesting input is minimized (go test
# -fuzzminimizetime, default 60s): FuzzReplay's inputs are whole captures of kilobytes and one
# execution replays one through a fresh engine (about 0.7 ms), so minimizing each new input for
# up to a minute left its workers no time to fuzz (8 executions in 10 s); 100x keeps them
# fuzzing at about 1000 executions per second.
FUZZ_MINIMIZE := FuzzReplay=100x

.PHONY: all build deps test unit fuzz fuzz-short bench bench-micro lint demo clean

all: build

deps:
	@bash ./deps.sh
	@$(GO) mod download

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/idlegate

# Unit tests run as any user; the namespace tests need root and never skip when CI=true.
# Then every playbook scenario (docs/playbook.md) and each of its variants plays in labs of its
# own, SCENARIO_PARALLEL at a time; any expectation not met fails the target. The stories mostly
# sleep (51 runs, about 23 minutes of story time, take 7 s of CPU): 8 at a time play them in
# about 3.5 minutes on 2 cores, where 3 took 7.7. bin/scenarios.xml is their JUnit XML, for CI to publish.
SCENARIO_PARALLEL ?= 8
test: build lint
	$(GO) test -count=1 -timeout 30m ./...
	@if [ "$$(id -u)" -ne 0 ] && [ "$$CI" != "true" ]; then \
		echo "scenarios: skipped, they need root (sudo make test; CI never skips them)"; \
	else \
		./$(BIN) scenario run --all --parallel $(SCENARIO_PARALLEL) --junit bin/scenarios.xml; \
	fi
	@$(MAKE) --no-print-directory fuzz-short

unit:
	$(GO) test -count=1 ./packet ./conntrack ./policy

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

fuzz:
	@if [ -z "$(FUZZ_TARGETS)" ]; then echo "fuzz: found no fuzz targets"; exit 1; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; min=60s; \
		for m in $(FUZZ_MINIMIZE); do [ "$${m%%=*}" = "$$name" ] && min=$${m#*=}; done; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		out=$$(mktemp); rc=0; \
		$(GO) test $$pkg -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$$min >$$out 2>&1 || rc=$$?; \
		cat $$out; \
		if [ $$rc -ne 0 ]; then \
			if grep -q '^    context deadline exceeded$$' $$out && ! grep -q 'Failing input written' $$out; then \
				echo "fuzz $$name: ran its $(FUZZTIME) and wrote no failing input; go test's 'context deadline exceeded' at the end is the Go 1.26 fuzz coordinator race golang/go#75804, not a crasher"; \
			else rm -f $$out; exit $$rc; fi; \
		fi; \
		rm -f $$out; \
	done

# The system benchmark (root, ~5 min): idlegate's lab against a kernel router with conntrack,
# one table of medians into BENCHMARKS.md. BENCH_QUICK=1: a ~1 min smoke. BENCH_DEVICE=water|fast
# forces the lab's TUN device; BENCH_FLAGS passes more flags (bin/benchrun -h).
bench: build
	$(GO) build -o bin/benchrun ./bench/cmd/benchrun
	$(GO) build -o bin/rr ./bench/rr
	./bin/benchrun -write BENCHMARKS.md $(BENCH_FLAGS)

# Go micro-benchmarks of the core (see BENCHMARKS.md, "Core").
bench-micro:
	$(GO) test -run='^$$' -bench=. -benchmem ./packet ./conntrack ./policy

demo: build
	./$(BIN) demo

clean:
	rm -rf bin
