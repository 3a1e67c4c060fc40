# qemu-machine: build, test, demo, install, benchmark.
#
#   make demo     build the library and the test guest, run examples/demo.c
#   make test     the whole test suite: Rust, C (under valgrind when CI is
#                 set), C++, Python, Go, install
#   make install  PREFIX=/usr/local (also LIBDIR, INCLUDEDIR, DESTDIR)
#   make bench    the benchmark table (bench-quick: a few iterations)
#   make fuzz     10 million fuzz runs per target (fuzz-quick: 30 s each)

CARGO ?= cargo
CC ?= cc
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic
RELEASE := target/release
SONAME := libqemu_machine.so.$(shell sed -n 's/^version = "\([0-9]*\)\..*/\1/p' Cargo.toml)
PYVENV := target/pyvenv
GO_ENV := GOCACHE=$(CURDIR)/target/go-cache GOPATH=$(CURDIR)/target/go-path \
	CGO_CFLAGS="-I$(CURDIR)/include" \
	CGO_LDFLAGS="-L$(CURDIR)/$(RELEASE) -Wl,-rpath,$(CURDIR)/$(RELEASE)"

.PHONY: all build header demo test test-rust test-python test-go deps guest qtest-accel \
	install bench bench-quick fuzz fuzz-quick

all: build

deps:
	scripts/install-deps.sh

# The library (.so with its SONAME link, .a) and the generated header.
build:
	$(CARGO) build --release
	ln -sf libqemu_machine.so $(RELEASE)/$(SONAME)

# Bring the committed header up to date with src/ffi (cbindgen writes the
# generated one into OUT_DIR; tests/header.rs compares them).
header:
	QM_UPDATE_HEADER=1 $(CARGO) test --test header

guest: deps
	scripts/build-guest.sh >/dev/null

qtest-accel: deps
	scripts/build-qtest-accel.sh >/dev/null

$(RELEASE)/demo: examples/demo.c build
	$(CC) $(CFLAGS_STRICT) -Iinclude -o $@ examples/demo.c \
		-L$(RELEASE) -Wl,-rpath,$(abspath $(RELEASE)) -lqemu_machine

demo: deps guest build $(RELEASE)/demo
	$(RELEASE)/demo target/guest

# The three suites are independent: they run at once, each one's output
# shown whole when it ends.
test: deps guest qtest-accel build
	$(MAKE) --no-print-directory --output-sync=target -j3 test-rust test-python test-go

test-rust:
	$(CARGO) test

$(PYVENV)/bin/pytest:
	python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q pytest

test-python: $(PYVENV)/bin/pytest
	$(PYVENV)/bin/python -m pytest -q bindings/python/tests

test-go:
	cd bindings/go && $(GO_ENV) go vet ./... && $(GO_ENV) go test -race -count=1 ./...

PREFIX ?= /usr/local
install: build
	PREFIX=$(PREFIX) $(if $(LIBDIR),LIBDIR=$(LIBDIR)) $(if $(INCLUDEDIR),INCLUDEDIR=$(INCLUDEDIR)) \
		DESTDIR=$(DESTDIR) scripts/install.sh $(RELEASE)

# BENCH_FLAGS: more arguments for bench/bench.py, e.g. --json FILE.
bench: deps build
	bench/run.sh $(BENCH_FLAGS)

bench-quick: deps build
	bench/run.sh --quick $(BENCH_FLAGS)

fuzz:
	scripts/fuzz.sh -runs=10000000

fuzz-quick:
	scripts/fuzz.sh -max_total_time=30
