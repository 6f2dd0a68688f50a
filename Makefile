# The verbs a person types. Everything installs what it needs on a fresh machine.
CARGO        ?= cargo
GUEST_TARGET := wasm32-wasip2
GUEST_DIR    := target/$(GUEST_TARGET)/guest
TAMMA        := target/debug/tamma
HOST_CRATES  := --exclude tamma-runtime --exclude tamma-e2e

.PHONY: all setup guests build demo test bench fmt lint clean

all: build

## setup: install the wasm target guests are built for
setup:
	@rustup target list --installed | grep -qx '$(GUEST_TARGET)' || rustup target add $(GUEST_TARGET)

## guests: build every guest component into target/wasm32-wasip2/guest/
guests: setup
	$(CARGO) build --target $(GUEST_TARGET) --profile guest --workspace $(HOST_CRATES)

## build: the runtime (binary `tamma`) and the guests
build: guests
	$(CARGO) build -p tamma-runtime

## demo: run the built-in echo provider in the sandbox (no key, no network)
demo: build
	$(TAMMA) run $(GUEST_DIR)/echo.wasm --prompt "Hello from inside the sandbox"
	$(TAMMA) run $(GUEST_DIR)/echo.wasm --stream --prompt "streamed word by word from a WebAssembly component"
	$(TAMMA) inspect $(GUEST_DIR)/echo.wasm

## test: the whole test suite (builds the guests first; host crates are the default members)
test: guests
	$(CARGO) test

## bench: benchmarks (release build); prints `bench: <name> <value> <unit>` lines
bench: guests
	$(CARGO) bench -p tamma-e2e

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy -p tamma-runtime -p tamma-e2e --all-targets -- -D warnings

clean:
	$(CARGO) clean
