#!/bin/sh
# Builds the release amphi as static executables (glibc +crt-static, libseccomp linked in) and prints
# the path of amphi: target/<host triple>/release/amphi. Its other binary, amphi-full (which amphi runs
# for create, run and exec), is in the same directory: install both. amphi-full is position-independent
# (static-pie); amphi is not (see below).
#   examples/build-release.sh                  the amphi and amphi-full binaries
#   examples/build-release.sh example NAME     the example NAME, built the same way (sharing the build)
#
# Why: every create+start+delete cycle starts amphi four times (create, its protected re-exec, start,
# delete). A static-pie binary loads no shared libraries and binds no symbols at start-up: 0.45 ms less
# CPU per start than the same release build linked dynamically (perf stat of --version: 1.87 vs
# 2.32 ms, 248 vs 289 page faults); static-pie keeps address-space randomisation. `cargo build --release`
# still builds a dynamically linked amphi that works the same, only slower to start.
#
# `amphi` (the front: start, delete, kill, state and the other subcommands whose process never enters a
# container) is linked at a fixed address (`-C relocation-model=static`, a plain static executable), so
# its start applies no relative relocations (40 IRELATIVE ones remain, glibc's ifuncs); the 10,767 of a
# static-pie front wrote to 48 pages of `.data.rel.ro`, each a copy-on-write page fault at every start.
# perf stat of --version:
# 97 against 140 page faults, 0.71-0.76 against 0.92-0.97 ms of CPU; a create+start+delete cycle (three
# starts of the front) 0.5 to 1.1 ms faster. The cost is that the front's own code and data are not
# randomised (its stack, heap and mappings still are), as for Debian's runc, whose whole binary is a
# fixed-address executable. amphi-full stays position-independent: its process becomes the container's
# init, which runs in the container until the workload starts and hosts a Wasm guest for its whole life.
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
"") what="--bin amphi-full" path=amphi ;;
example) what="--example ${2:?example NAME}" path=examples/$2 ;;
*) echo "usage: build-release.sh [example NAME]" >&2; exit 2 ;;
esac
# rustc looks for a static library only in -L directories: tell libseccomp-sys where libseccomp.a is.
seccomp_a=$(gcc -print-file-name=libseccomp.a)
[ -f "$seccomp_a" ] || { echo "build-release.sh: no libseccomp.a (apt-get install libseccomp-dev)" >&2; exit 1; }
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(cd "$(dirname "$seccomp_a")" && pwd -P)
export RUSTFLAGS LIBSECCOMP_LINK_TYPE LIBSECCOMP_LIB_PATH
# shellcheck disable=SC2086 # $what is two words
cargo build --release --target "$host" $what >&2
# The front: the same libraries (compiled position-independent, which links into either kind), but its
# own crate, and with fat LTO the whole program, code-generated for a fixed address and linked as a
# plain static executable. `cargo rustc` passes the flag to this one binary only.
if [ "$path" = amphi ]; then
    cargo rustc --release --target "$host" --bin amphi -- -C relocation-model=static >&2
fi
# Where cargo put it (CARGO_TARGET_DIR or build.target-dir may move target/).
target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
echo "${target_dir:-$PWD/target}/$host/release/$path"
