# qemu-machine: build, test, demo.
CARGO ?= cargo

.PHONY: all build demo test deps

all: build

deps:
	scripts/install-deps.sh

build:
	$(CARGO) build --release

demo: deps
	$(CARGO) run --release --example rust_api

# C tests run under valgrind when CI is set (or QM_VALGRIND=1).
test: deps
	$(CARGO) test
