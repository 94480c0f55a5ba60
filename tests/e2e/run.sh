#!/usr/bin/env bash
# The engine end-to-end suite: podman, containerd (ctr), the Kubernetes CRI path and docker drive amphi with
# Linux and Wasm images; then the same scripts' Linux steps drive runc, to show the suite itself is sound.
# Run as root from anywhere: tests/e2e/run.sh [ENGINE...]   (default: podman containerd cri docker)
# Needs the engines from apt (see .ci/run) and target/debug/amphi (cargo build). Exit status: 0 when every
# step passed with every runtime.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(podman containerd cri docker)

images=$(mktemp -d /tmp/amphi-e2e-images.XXXXXX)
trap 'rm -rf "$images"' EXIT
"$here/images.sh" "$images" || { echo "images.sh failed" >&2; exit 1; }
export AMPHI_E2E_IMAGES=$images

summary=()
status=0
for rt in amphi runc; do
    for e in "${engines[@]}"; do
        echo "=== $e with $rt ==="
        if [ "$rt" = amphi ]; then
            env AMPHI_E2E_RUNTIME="${AMPHI_E2E_RUNTIME:-$repo/target/debug/amphi}" bash "$here/$e.sh" | tee "$images/$e-$rt.log"
        else
            env AMPHI_E2E_RUNTIME="$(command -v runc)" AMPHI_E2E_LINUX_ONLY=1 bash "$here/$e.sh" | tee "$images/$e-$rt.log"
        fi
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 0 ] || status=1
        summary+=("$(grep -E '^# .*: [0-9]+ passed' "$images/$e-$rt.log" | tail -n 1) (runtime $rt, exit $rc)")
    done
done
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit $status
