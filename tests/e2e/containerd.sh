#!/usr/bin/env bash
# containerd.sh: containerd 1.6 (Debian's package) drives the runtime under test through its runc v2 shim,
# with `ctr` as the client: the shim is pointed at the runtime with `ctr run --runc-binary <runtime>` (the
# runc shim option BinaryName; ctr 1.6 has no other way to set it per container).
#
# Run as root from the repository: bash tests/e2e/containerd.sh      (see lib.sh for the environment)
# Needs (Debian packages): containerd (ctr, containerd-shim-runc-v2), plus what images.sh needs.
#
# A private containerd: root, state, opt dir and gRPC socket under the work dir, the CRI plugin disabled
# (cri.sh runs its own instance), overlayfs snapshotter. The runtime's state (--root) is also under the work
# dir (ctr --runc-root), and so are ctr's I/O fifos (--fifo-dir). Containers live in the containerd namespace
# amphi-e2e-ctr-<pid>, so their cgroups are /amphi-e2e-ctr-<pid>/<id> (ctr's default cgroupsPath is
# /<namespace>/<id>). The only things outside the work dir are the shims' sockets, which the runc v2 shim
# always puts in /run/containerd/s (and removes when it exits); the cleanup removes any that are left and the
# /run/containerd directories when this script created them.
# The checks read the cgroup v1 controllers (freezer, pids, memory) of this host's hybrid layout.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
e2e_init containerd
e2e_images

NS=amphi-e2e-ctr-$$
SOCK=$E2E_WORK/containerd.sock
RTROOT=$E2E_WORK/runtime-root
STATE=$E2E_WORK/state
mkdir -p "$E2E_WORK/fifo" "$RTROOT"

# ctr against the private daemon and namespace; never waits forever on a hung runtime.
c() { timeout 60 ctr --address "$SOCK" --namespace "$NS" "$@"; }
# The flags that point the runc v2 shim at the runtime under test (for `ctr run`).
RT=(--runtime io.containerd.runc.v2 --runc-binary "$E2E_RUNTIME" --runc-root "$RTROOT" --fifo-dir "$E2E_WORK/fifo")

cat >"$E2E_WORK/config.toml" <<EOF
# containerd 1.6 configuration for tests/e2e/containerd.sh: everything under the work dir.
version = 2
root = "$E2E_WORK/root"
state = "$STATE"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$E2E_WORK/opt"
EOF

run_dir_existed=0
[ -d /run/containerd ] && run_dir_existed=1

# Stop everything this script started, in order: the tasks (through containerd), containerd, any shim of
# this daemon still alive and the processes left in this namespace's cgroups (all by pid), the mounts under
# the work dir, the namespace's cgroups, the shims' sockets.
cleanup_containerd() {
    local id d sockets=() i
    if [ -S "$SOCK" ]; then
        for id in $(c task ls -q 2>/dev/null); do
            c task kill -s KILL "$id"; sleep 0.2; c task delete -f "$id"
        done
        for id in $(c container ls -q 2>/dev/null); do c container rm "$id"; done
    fi
    for d in "$STATE"/io.containerd.runtime.v2.task/"$NS"/*/address; do
        [ -f "$d" ] && sockets+=("$(sed 's|^unix://||' "$d")")
    done
    if [ -n "${CONTAINERD_PID:-}" ] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
        kill -TERM "$CONTAINERD_PID"
        for ((i = 0; i < 50; i++)); do kill -0 "$CONTAINERD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CONTAINERD_PID" 2>/dev/null
        wait "$CONTAINERD_PID" 2>/dev/null
    fi
    # Shims of this daemon, and what is left in our cgroups (by pid), then mounts and cgroups.
    kill_shims "$SOCK"
    kill_cgroup_children "$NS"
    sleep 0.2
    unmount_under "$E2E_WORK"
    remove_cgroup_tree "$NS"
    for d in "${sockets[@]}"; do rm -f "$d"; done
    if [ "$run_dir_existed" = 0 ]; then
        rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null
    fi
    return 0
}
defer cleanup_containerd

containerd --config "$E2E_WORK/config.toml" >"$E2E_WORK/containerd.log" 2>&1 &
CONTAINERD_PID=$!
step "containerd starts with a private root and socket" wait_until 30 c version

# --- images -------------------------------------------------------------------------------------------------
expect "import the busybox OCI archive" 'amphi-e2e/busybox:latest' c image import "$E2E_IMAGES/busybox.oci.tar"
if wasm_steps; then
    # wasm-compat's only manifest is for wasi/wasm: --all-platforms imports (and unpacks) it on linux/amd64.
    expect "import the wasm-compat OCI archive (platform wasi/wasm)" 'amphi-e2e/wasm-compat:latest' \
        c image import --all-platforms "$E2E_IMAGES/wasm-compat.oci.tar"
    expect "import the wasm-plain OCI archive" 'amphi-e2e/wasm-plain:latest' \
        c image import "$E2E_IMAGES/wasm-plain.oci.tar"
    expect "ctr lists wasm-compat as wasi/wasm" 'amphi-e2e/wasm-compat:latest .* wasi/wasm' c image ls
fi

# gone ID...: containerd knows no such container or task, and neither the runtime's state dir nor any
# cgroup of the container is left.
gone() {
    local id d ok=0
    for id in "$@"; do
        c container ls -q | grep -qx "$id" && { echo "container $id still listed"; ok=1; }
        c task ls -q | grep -qx "$id" && { echo "task $id still listed"; ok=1; }
        [ -e "$RTROOT/$NS/$id" ] && { echo "runtime state $RTROOT/$NS/$id left"; ok=1; }
        for d in /sys/fs/cgroup/*/"$NS/$id" /sys/fs/cgroup/unified/"$NS/$id"; do
            [ -e "$d" ] && { echo "cgroup $d left"; ok=1; }
        done
    done
    return $ok
}

# --- run --rm -----------------------------------------------------------------------------------------------
# The process prints a greeting and the memory cgroup it sees: ctr's default cgroupsPath is /<ns>/<id>.
expect "run --rm prints the container's output, in cgroup /$NS/rm1" "^hello from rm1 in /$NS/rm1\$" \
    c run --rm "${RT[@]}" amphi-e2e/busybox:latest rm1 \
    sh -c 'echo "hello from rm1 in $(sed -n "s/^[0-9]*:memory://p" /proc/self/cgroup)"'
step "run --rm left no container and no runtime state" gone rm1

# --- run -d, exec, ps, pause/resume, kill, delete -----------------------------------------------------------
task_status() { c task ls | awk -v id="$1" '$1 == id { print $3 }'; }
status_is() { [ "$(task_status "$1")" = "$2" ]; }
# exit_status_is N CMD...: CMD exits with status N.
exit_status_is() { local want=$1 rc=0; shift; "$@" || rc=$?; echo "status $rc"; [ "$rc" -eq "$want" ]; }
# ps_matches_cgroup ID: `ctr task ps` (the runtime's `ps --format json`) lists exactly the pids in the
# container's pids cgroup, and there are at least 2 of them.
ps_matches_cgroup() {
    local from_ps from_cg
    from_ps=$(c task ps "$1" | awk 'NR > 1 { print $1 }' | sort -n | tr '\n' ' ')
    from_cg=$(sort -n "/sys/fs/cgroup/pids/$NS/$1/cgroup.procs" | tr '\n' ' ')
    echo "ctr task ps: $from_ps; cgroup.procs: $from_cg"
    [ -n "$from_ps" ] && [ "$from_ps" = "$from_cg" ] && [ "$(echo "$from_ps" | wc -w)" -ge 2 ]
}
freezer_is() { grep -qx "$2" "/sys/fs/cgroup/freezer/$NS/$1/freezer.state"; }

# pid 1 is a shell that exits with status 3 on SIGTERM (a trapped signal interrupts `wait`); its processes
# do not change while the steps look at them.
step "run -d starts a long-running task" \
    c run -d "${RT[@]}" amphi-e2e/busybox:latest d1 sh -c 'trap "exit 3" TERM; sleep 1000 & wait'
step "the task is RUNNING" wait_until 10 status_is d1 RUNNING
expect "the runtime under test holds the container (its state: running)" '"status": *"running"' \
    "$E2E_RUNTIME" --root "$RTROOT/$NS" state d1
expect "task exec runs in the container (its pid 1 is the task's shell)" '^ *1 +root +sh -c trap' \
    c task exec --fifo-dir "$E2E_WORK/fifo" --exec-id x1 d1 ps
step "task exec reports the process's exit status (7)" \
    exit_status_is 7 c task exec --fifo-dir "$E2E_WORK/fifo" --exec-id x2 d1 sh -c 'exit 7'
step "task exec -d starts a second process" \
    c task exec -d --fifo-dir "$E2E_WORK/fifo" --exec-id x3 d1 sleep 1000
step "task ps lists exactly the pids in the container's cgroup" ps_matches_cgroup d1
pause_d1() { c task pause d1 && status_is d1 PAUSED; }
resume_d1() { c task resume d1 && status_is d1 RUNNING; }
step "task pause: ctr reports PAUSED" pause_d1
step "paused: the container's freezer cgroup is FROZEN" freezer_is d1 FROZEN
step "task resume: ctr reports RUNNING" resume_d1
step "resumed: the freezer cgroup is THAWED" freezer_is d1 THAWED
expect "task exec works after resume" '^after-resume$' \
    c task exec --fifo-dir "$E2E_WORK/fifo" --exec-id x4 d1 echo after-resume
step "task kill sends SIGTERM" c task kill d1
step "the task is STOPPED" wait_until 15 status_is d1 STOPPED
expect "task delete reports the exit status the trap chose (3)" 'exit code 3' c task delete d1
step "container rm" c container rm d1
step "delete removed the container, its runtime state and its cgroups" gone d1

# --- resources ------------------------------------------------------------------------------------------------
# The container reads its own memory cgroup's limit through a read-only bind mount of the memory hierarchy.
expect "--memory-limit 64 MiB: the container's memory cgroup has that limit" '^67108864$' \
    c run --rm "${RT[@]}" --memory-limit 67108864 \
    --mount type=bind,src=/sys/fs/cgroup/memory,dst=/cgm,options=rbind:ro amphi-e2e/busybox:latest mem1 \
    sh -c 'cat "/cgm$(sed -n "s/^[0-9]*:memory://p" /proc/self/cgroup)/memory.limit_in_bytes"'

# --- failure ----------------------------------------------------------------------------------------------------
# The shim reads the runtime's log.json back: ctr must show the runtime's own message naming the binary.
expect_fail "a missing binary: ctr reports the runtime's error from log.json" \
    'OCI runtime create failed: .*/no/such/binary' \
    c run --rm "${RT[@]}" amphi-e2e/busybox:latest bad1 /no/such/binary
step "the failed create left no container and no runtime state" gone bad1

# --- wasm -------------------------------------------------------------------------------------------------------
if wasm_steps; then
    HELLO='^Hello from a WebAssembly container run by amphi \(wasmtime\)$'
    expect "wasm-compat with --annotation module.wasm.image/variant=compat runs the module" "$HELLO" \
        c run --rm "${RT[@]}" --platform wasi/wasm --annotation module.wasm.image/variant=compat \
        amphi-e2e/wasm-compat:latest w1
    expect "wasm-plain without annotations runs the module (detection by content)" "$HELLO" \
        c run --rm "${RT[@]}" amphi-e2e/wasm-plain:latest w2
    step "wasm runs left no container and no runtime state" gone w1 w2
fi

e2e_finish
