# The verbs a person types. Everything installs what it needs on a fresh machine.
CARGO        ?= cargo
GUEST_TARGET := wasm32-wasip2
GUEST_DIR    := target/$(GUEST_TARGET)/guest
TAMMA        := target/debug/tamma
HOST_CRATES  := tamma-sandbox tamma-registry tamma-server tamma tamma-test-support tamma-e2e tamma-mock-upstream
NOT_HOST     := $(foreach c,$(HOST_CRATES),--exclude $(c))

.PHONY: all setup lint-tools test-tools guests guests-js guests-py sdk-packages build demo test test-services bench fmt lint clean

all: build

## setup: install the wasm target guests are built for
setup:
	@rustup target list --installed | grep -qx '$(GUEST_TARGET)' || rustup target add $(GUEST_TARGET)

# rustfmt and clippy for `make lint` (a minimal toolchain has neither).
lint-tools:
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

## guests: build every guest component into target/wasm32-wasip2/guest/
guests: setup guests-js guests-py
	$(CARGO) build --target $(GUEST_TARGET) --profile guest --workspace $(NOT_HOST)

# JavaScript and Python providers. The toolchains are pinned (guests/js-sdk/
# package-lock.json, guests/py-sdk/requirements.txt) and installed into ignored
# repo-local directories; every component is a file target, rebuilt only when its
# sources, its SDK, the WIT or the toolchain pin changed.
NODE            ?= node
NPM             ?= npm
PYTHON          ?= python3
WIT_FILES       := $(wildcard wit/*.wit wit/deps/*.wit)
WORLD           := tamma:provider/provider
JS_SDK          := guests/js-sdk
JS_TOOLCHAIN    := $(JS_SDK)/node_modules/.package-lock.json
COMPONENTIZE_JS := $(NODE) $(JS_SDK)/node_modules/@bytecodealliance/componentize-js/src/cli.js
JS_GUESTS       := $(patsubst guests/js-%/src/index.js,$(GUEST_DIR)/js_%.wasm,$(wildcard guests/js-*/src/index.js))
PY_SDK          := guests/py-sdk
PY_VENV         := target/py-venv
PY_TOOLCHAIN    := $(PY_VENV)/.installed
PY_GUESTS       := $(patsubst guests/py-%/app.py,$(GUEST_DIR)/py_%.wasm,$(wildcard guests/py-*/app.py))

## guests-js: the JavaScript providers (componentize-js), e.g. target/wasm32-wasip2/guest/js_echo.wasm
guests-js: $(JS_GUESTS)

## guests-py: the Python providers (componentize-py), e.g. target/wasm32-wasip2/guest/py_echo.wasm
guests-py: $(PY_GUESTS)

$(JS_TOOLCHAIN): $(JS_SDK)/package.json $(JS_SDK)/package-lock.json
	cd $(JS_SDK) && $(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

$(PY_TOOLCHAIN): $(PY_SDK)/requirements.txt
	$(PYTHON) -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	@touch $@

## sdk-packages: the SDKs as a stranger takes them, in target/sdk/: the Rust crate, the npm tarball, the wheel
# (what `tamma new --sdk-path` names; runtime/cli/tests/new_project.rs builds its own).
# The wheel is built from a copy (the WIT symlink followed), so guests/py-sdk
# stays free of build/ and *.egg-info.
SDK_OUT := target/sdk
sdk-packages: $(PY_TOOLCHAIN)
	@mkdir -p $(SDK_OUT)
	$(CARGO) package -p tamma-guest-sdk --no-verify --allow-dirty
	cp target/package/tamma-guest-sdk-*.crate $(SDK_OUT)/
	cd $(JS_SDK) && $(NPM) pack --pack-destination $(abspath $(SDK_OUT))
	rm -rf $(SDK_OUT)/py-sdk && cp -rL $(PY_SDK) $(SDK_OUT)/py-sdk
	$(PY_VENV)/bin/pip wheel --quiet --disable-pip-version-check --no-deps $(SDK_OUT)/py-sdk -w $(SDK_OUT)
	rm -rf $(SDK_OUT)/py-sdk

.SECONDEXPANSION:
# guests/js-NAME/src/*.js -> js_NAME.wasm (no `fetch-event`: providers export no HTTP handler)
$(GUEST_DIR)/js_%.wasm: $$(wildcard guests/js-$$*/src/*.js) $(JS_SDK)/tamma.js $(WIT_FILES) $(JS_TOOLCHAIN)
	@mkdir -p $(@D)
	$(COMPONENTIZE_JS) guests/js-$*/src/index.js --wit wit --world-name $(WORLD) --disable fetch-event -o $@

# guests/py-NAME/app.py -> py_NAME.wasm; VIRTUAL_ENV keeps the machine's own
# site-packages out of the component.
$(GUEST_DIR)/py_%.wasm: $$(wildcard guests/py-$$*/*.py) $(wildcard $(PY_SDK)/tamma_provider/*.py) $(WIT_FILES) $(PY_TOOLCHAIN)
	@mkdir -p $(@D)
	VIRTUAL_ENV=$(abspath $(PY_VENV)) $(PY_VENV)/bin/componentize-py --quiet -d wit -w $(WORLD) \
		componentize app -p guests/py-$* -p $(PY_SDK) -o $@

## build: the runtime (binary `tamma`) and the guests
build: guests
	$(CARGO) build -p tamma

## demo: start the gateway on its built-in default (echo), ask it over HTTP, stop it
demo: build
	TAMMA=$(TAMMA) ./scripts/demo.sh

## test: the whole test suite (builds the guests first; host crates are the default members)
# Test tools get a venv of their own: componentize-py bundles whatever is in
# $(PY_VENV) into the Python components.
PY_TEST_VENV  := target/py-test-venv
PY_TEST_TOOLS := $(PY_TEST_VENV)/.installed

$(PY_TEST_TOOLS): tests/requirements.txt
	$(PYTHON) -m venv $(PY_TEST_VENV)
	$(PY_TEST_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	@touch $@

# The limits store's tests run a real redis-server, and the OCI tests a real
# registry (docker-registry: CNCF distribution 2.8; htpasswd from apache2-utils
# writes the bcrypt login of the credentials test), all Debian packages,
# started by the tests themselves on free loopback ports.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-services:
	@command -v redis-server >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }
	@command -v docker-registry >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends docker-registry; }
	@command -v htpasswd >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends apache2-utils; }

# promtool (Debian's `prometheus` package) checks /metrics and the alert rules
# in deploy/ (runtime/cli/tests/serve_ops.rs); minisign signs the components of
# the signature tests (runtime/cli/tests/oci_registry.rs).
test-tools:
	@command -v promtool >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }
	@command -v minisign >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends minisign; }

test: guests $(PY_TEST_TOOLS) test-services test-tools
	$(CARGO) test
	$(CARGO) test -p tamma-guest-sdk -p tamma-guest-openai -p tamma-guest-anthropic
	tests/image/build-image-test.sh

## bench: benchmarks (release build); prints `bench: <name> <value> <unit>` lines
bench: guests $(PY_TEST_TOOLS) test-services
	$(CARGO) bench -p tamma-e2e
	$(CARGO) bench -p tamma --bench startup --bench telemetry

fmt:
	$(CARGO) fmt --all

## lint: formatting, and clippy with warnings as errors on the host crates and on the guests (wasm32-wasip2)
lint: setup lint-tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(foreach c,$(HOST_CRATES),-p $(c)) --all-targets -- -D warnings
	$(CARGO) clippy --target $(GUEST_TARGET) --workspace $(NOT_HOST) --all-targets -- -D warnings

clean:
	$(CARGO) clean
