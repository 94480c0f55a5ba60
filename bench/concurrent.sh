#!/usr/bin/env bash
# Creates and starts N containers at once (each `create && start` in its own background job), waits for
# all of them, then deletes them all at once. Timed as a whole by bench/run.sh.
# Usage: bench/concurrent.sh N BUNDLES RUNTIME [GLOBAL-ARGS...]   (bundles are BUNDLES/c1 .. BUNDLES/cN;
# container ids c1 .. cN). Exit status 1 if any create, start or delete failed.
set -u
n=$1 bundles=$2
shift 2
pids=()
for i in $(seq 1 "$n"); do
    ("$@" create -b "$bundles/c$i" "c$i" && "$@" start "c$i") &
    pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
pids=()
for i in $(seq 1 "$n"); do
    "$@" delete -f "c$i" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit "$fail"
