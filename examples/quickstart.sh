#!/bin/sh
# Quick start on a fresh Debian 12 machine, as root: installs what amphi needs, builds it, and runs the
# example containers.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq busybox-static gcc libc6-dev pkg-config libseccomp-dev >/dev/null
amphi=$(./examples/build-release.sh)
./examples/busybox/make-bundle.sh
echo "--- a Linux container (busybox) ---"
"$amphi" run --bundle examples/busybox/bundle "amphi-hello-$$"
./examples/wasm/make-bundle.sh
echo "--- a WebAssembly container (a WASI preview 1 module as text; no annotation needed) ---"
"$amphi" run --bundle examples/wasm/bundle "amphi-wasm-hello-$$"
./examples/wasm/make-bundle.sh component
echo "--- the same program as a WASI preview 2 component ---"
"$amphi" run --bundle examples/wasm/bundle-component "amphi-component-hello-$$"
