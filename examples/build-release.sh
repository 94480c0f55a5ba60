#!/bin/sh
# Builds the release amphi as static position-independent executables (glibc static-pie, libseccomp
# linked in) and prints the path of amphi: target/<host triple>/release/amphi. Its other binary,
# amphi-full (which amphi runs for create, run and exec), is in the same directory: install both.
#   examples/build-release.sh                  the amphi and amphi-full binaries
#   examples/build-release.sh example NAME     the example NAME, built the same way (sharing the build)
#
# Why: every create+start+delete cycle starts amphi four times (create, its protected re-exec, start,
# delete). A static-pie binary loads no shared libraries and binds no symbols at start-up: 0.45 ms less
# CPU per start than the same release build linked dynamically (perf stat of --version: 1.87 vs
# 2.32 ms, 248 vs 289 page faults), with the same address-space randomisation. `cargo build --release`
# still builds a dynamically linked amphi that works the same, only slower to start.
#
# `--cfg getrandom_backend="linux_getrandom"`: the getrandom crate (the random source wasmtime-wasi
# seeds for every Wasm guest) finds getrandom(2) through dlsym, which a static binary cannot do, and
# then reads /dev/urandom after a poll of /dev/random: three more files opened in a Wasm container's
# init process, and a dependence on those device nodes. The cfg makes it call getrandom(2) directly.
#
# The target triple is given explicitly so that the static flag reaches amphi and its libraries but not
# the proc-macros and build scripts, which run on the host and cannot be static.
# Needs: Rust (rustup), gcc, libc6-dev (libc.a), libseccomp-dev (libseccomp.a).
set -eu
unset CDPATH # cd must print nothing: stdout is the path alone
cd "$(dirname "$0")/.."
command -v rustc >/dev/null && command -v cargo >/dev/null ||
    { echo "build-release.sh: rustc and cargo are not on PATH (install Rust 1.95 with rustup)" >&2; exit 1; }
host=$(rustc -vV | sed -n 's/^host: //p')
case $host in
*-linux-gnu*) ;;
*) echo "build-release.sh: host $host is not a glibc Linux target; use cargo build --release" >&2; exit 1 ;;
esac
case "${1:-}" in
"") what="--bin amphi --bin amphi-full" path=amphi ;;
example) what="--example ${2:?example NAME}" path=examples/$2 ;;
*) echo "usage: build-release.sh [example NAME]" >&2; exit 2 ;;
esac
# rustc looks for a static library only in -L directories: tell libseccomp-sys where libseccomp.a is.
seccomp_a=$(gcc -print-file-name=libseccomp.a)
[ -f "$seccomp_a" ] || { echo "build-release.sh: no libseccomp.a (apt-get install libseccomp-dev)" >&2; exit 1; }
# shellcheck disable=SC2086 # $what is two words
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" LIBSECCOMP_LINK_TYPE=static \
    LIBSECCOMP_LIB_PATH=$(cd "$(dirname "$seccomp_a")" && pwd -P) cargo build --release --target "$host" $what >&2
# Where cargo put it (CARGO_TARGET_DIR or build.target-dir may move target/).
target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
echo "${target_dir:-$PWD/target}/$host/release/$path"
