#!/usr/bin/env bash
# The steps of the container image build (deploy/Dockerfile runs exactly this),
# kept in a script so that a test can run them on a clean clone without a
# container daemon (tests/image/build-image-test.sh, run by `make test`).
#
#   deploy/build-image.sh OUT_DIR
#
# Builds only what the image holds: the three Rust guests that `tamma` embeds
# (echo, openai, anthropic; no Node, no Python) and the `tamma` binary, then
# installs the binary as OUT_DIR/tamma.
#
# Environment:
#   TAMMA_BUILD_PROFILE  cargo profile of the binary (default: release). The
#                        test uses `dev` to reuse the dependencies already built
#                        in the checkout's target directory.
#   CARGO_TARGET_DIR     where cargo builds (default: ./target). Pointing it at an
#                        existing target directory reuses its compiled
#                        dependencies (wasmtime takes 15+ minutes from scratch).
set -euo pipefail

out=${1:?usage: deploy/build-image.sh OUT_DIR}
cd "$(dirname "$0")/.."
profile=${TAMMA_BUILD_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$target_dir

if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi

# 1. The embedded guests, into $CARGO_TARGET_DIR/wasm32-wasip2/guest/ (where
#    runtime/cli/build.rs looks for them).
cargo build --locked --target wasm32-wasip2 --profile guest \
    -p tamma-guest-echo -p tamma-guest-openai -p tamma-guest-anthropic
for g in echo openai anthropic; do
    test -s "$target_dir/wasm32-wasip2/guest/$g.wasm" || {
        echo "build-image: guest $g.wasm was not built" >&2
        exit 1
    }
done

# 2. The binary, with the guests embedded.
cargo build --locked --profile "$profile" -p tamma --bin tamma
case $profile in
    dev) dir=debug ;;
    *) dir=$profile ;;
esac
install -D -m 0755 "$target_dir/$dir/tamma" "$out/tamma"
echo "build-image: $out/tamma"
