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

test: deps
	$(CARGO) test
