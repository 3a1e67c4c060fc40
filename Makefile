# qemu-machine: build, test, demo.
#
#   make demo     build the library and the test guest, run examples/demo.c
#   make test     the whole test suite (C tests under valgrind when CI is set)

CARGO ?= cargo
CC ?= cc
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic
RELEASE := target/release
SONAME := libqemu_machine.so.$(shell sed -n 's/^version = "\([0-9]*\)\..*/\1/p' Cargo.toml)

.PHONY: all build demo test deps guest fuzz fuzz-quick

all: build

deps:
	scripts/install-deps.sh

# The library (.so with its SONAME link, .a) and the generated header.
build:
	$(CARGO) build --release
	ln -sf libqemu_machine.so $(RELEASE)/$(SONAME)

guest: deps
	scripts/build-guest.sh >/dev/null

$(RELEASE)/demo: examples/demo.c build
	$(CC) $(CFLAGS_STRICT) -Iinclude -o $@ examples/demo.c \
		-L$(RELEASE) -Wl,-rpath,$(abspath $(RELEASE)) -lqemu_machine

demo: deps guest build $(RELEASE)/demo
	$(RELEASE)/demo target/guest

test: deps guest
	$(CARGO) test

# Fuzz the QMP stream reader and the event matcher (cargo-fuzz, stable
# toolchain): 10 million runs each; fuzz-quick runs each for 30 s.
fuzz:
	scripts/fuzz.sh -runs=10000000

fuzz-quick:
	scripts/fuzz.sh -max_total_time=30
