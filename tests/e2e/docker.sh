#!/usr/bin/env bash
# docker.sh: Debian's dockerd 20.10 drives the runtime under test, registered as the runtimes "amphi" and
# "amphi-wasm" by the daemon.json of examples/engines/daemon.json (its paths replaced by the runtime under
# test and an amphi-wasm symlink to it). The client is Debian's /usr/bin/docker (package docker.io).
#
# Run as root from the repository: bash tests/e2e/docker.sh      (see lib.sh for the environment)
# Needs (Debian packages): docker.io, containerd, skopeo (`docker load` wants docker-archive), jq, plus what
# images.sh needs.
#
# Everything private, under the work dir: a containerd started here (same settings as containerd.sh; dockerd
# uses it through --containerd, in its namespace "moby"), dockerd's --data-root, --exec-root (which holds
# the runtimes' --root, runtime-<name>), --pidfile, API socket, trust key (--deprecated-key-path) and the
# client's config dir. No network set-up (--bridge=none, no iptables, no masquerading); cgroupfs driver
# (from daemon.json) and --cgroup-parent /amphi-e2e-docker-<pid>, so the containers' cgroups are
# /amphi-e2e-docker-<pid>/<container id>. Outside the work dir, the shims' sockets in /run/containerd/s and
# dockerd's /run/docker/plugins are removed at the end (the directories when this script created them).
# The checks read the cgroup v1 controllers (freezer, pids, memory) of this host's hybrid layout.
#
# docker passes no annotations to the runtime: the Wasm image runs by content detection (runtime amphi) or
# by the runtime's name (amphi-wasm). dockerd 20.10 refuses to load an image whose platform is wasi/wasm, so
# the wasm-compat image is run only when `docker load` accepts it (the script says which happened).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
e2e_init docker
e2e_images

W=$E2E_WORK
CSOCK=$W/containerd.sock
DSOCK=$W/docker.sock
EXEC=$W/exec
CGP=amphi-e2e-docker-$$
export DOCKER_HOST=unix://$DSOCK DOCKER_CONFIG=$W/client
mkdir -p "$W/bin" "$DOCKER_CONFIG"
ln -s "$E2E_RUNTIME" "$W/bin/amphi-wasm"

# The docker client against the private daemon; never waits forever on a hung runtime.
d() { timeout 90 /usr/bin/docker "$@"; }

cat >"$W/containerd.toml" <<EOF
# containerd 1.6 configuration for tests/e2e/docker.sh: everything under the work dir.
version = 2
root = "$W/containerd-root"
state = "$W/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CSOCK"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/opt"
EOF
# The test adds one setting to the example: dockerd's trust key (by default /etc/docker/key.json).
jq --arg amphi "$E2E_RUNTIME" --arg wasm "$W/bin/amphi-wasm" --arg key "$W/key.json" \
    '.runtimes.amphi.path = $amphi | .runtimes["amphi-wasm"].path = $wasm | .["deprecated-key-path"] = $key' \
    "$E2E_REPO/examples/engines/daemon.json" >"$W/daemon.json" ||
    { echo "cannot make daemon.json from examples/engines/daemon.json" >&2; exit 2; }

run_containerd_existed=0 run_docker_existed=0
[ -d /run/containerd ] && run_containerd_existed=1
[ -d /run/docker ] && run_docker_existed=1

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS.
stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid"
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
}

# Stop everything this script started, in order: the containers (through docker), dockerd, containerd, any
# shim of this containerd still alive and the processes left in our cgroups (all by pid), the mounts under
# the work dir, our cgroups, the shims' sockets and the /run directories we created.
cleanup_docker() {
    local id f sockets=()
    if [ -S "$DSOCK" ]; then
        for id in $(d ps -aq 2>/dev/null); do d rm -f "$id"; done
    fi
    stop_pid "${DOCKERD_PID:-}" 20
    for f in "$W"/containerd-state/io.containerd.runtime.v2.task/*/*/address; do
        [ -f "$f" ] && sockets+=("$(sed 's|^unix://||' "$f")")
    done
    stop_pid "${CONTAINERD_PID:-}" 5
    wait 2>/dev/null
    kill_shims "$CSOCK"
    kill_cgroup_children "$CGP"
    sleep 0.2
    unmount_under "$W"
    remove_cgroup_tree "$CGP"
    for f in "${sockets[@]}"; do rm -f "$f"; done
    [ "$run_containerd_existed" = 1 ] || rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null
    [ "$run_docker_existed" = 1 ] || rmdir /run/docker/plugins /run/docker 2>/dev/null
    return 0
}
defer cleanup_docker

containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
CONTAINERD_PID=$!
dockerd --config-file "$W/daemon.json" --containerd "$CSOCK" --data-root "$W/data" --exec-root "$EXEC" \
    --pidfile "$W/dockerd.pid" -H "unix://$DSOCK" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false --cgroup-parent "/$CGP" \
    >"$W/dockerd.log" 2>&1 &
DOCKERD_PID=$!
daemon_up() { d version >/dev/null; }
if ! wait_until 60 daemon_up; then
    step "dockerd starts" sh -c "tail -n 20 '$W/dockerd.log' '$W/containerd.log'; false"
    e2e_finish
    exit 1
fi
expect "dockerd starts and lists the runtimes amphi and amphi-wasm" 'Runtimes:.* amphi .*amphi-wasm|Runtimes:.* amphi-wasm .*amphi' \
    d info
expect "dockerd uses the cgroupfs driver (daemon.json exec-opts)" 'Cgroup Driver: cgroupfs' d info

# load NAME: convert the OCI archive to a docker-archive with skopeo and `docker load` it.
load() {
    rm -f "$W/$1.docker.tar"
    skopeo copy -q "oci-archive:$E2E_IMAGES/$1.oci.tar" "docker-archive:$W/$1.docker.tar:amphi-e2e/$1:latest" &&
        d load -i "$W/$1.docker.tar"
}
expect "load the busybox image" 'Loaded image: amphi-e2e/busybox:latest' load busybox

# --- run --rm -----------------------------------------------------------------------------------------------
expect "run --rm --runtime amphi prints the container's output, in cgroup /$CGP/<id>" \
    "^hello in /$CGP/[0-9a-f]{64}\$" \
    d run --rm --runtime amphi amphi-e2e/busybox:latest \
    sh -c 'echo "hello in $(sed -n "s/^[0-9]*:memory://p" /proc/self/cgroup)"'

# --- run -d, exec, top, pause, update, stop, rm ------------------------------------------------------------
# pid 1 is a shell that exits with status 3 on SIGTERM (a trapped signal interrupts `wait`).
step "run -d --runtime amphi starts a container" \
    d run -d --runtime amphi --name d1 amphi-e2e/busybox:latest sh -c 'trap "exit 3" TERM; sleep 1000 & wait'
expect "inspect: running, with runtime amphi" '^running amphi$' \
    d inspect -f '{{.State.Status}} {{.HostConfig.Runtime}}' d1
ID=$(d inspect -f '{{.Id}}' d1 2>/dev/null)
# dockerd 20.10 gives every runtime the --root $EXEC/runtime-runc/<namespace>.
runtime_state() { "$E2E_RUNTIME" --root "$(echo "$EXEC"/runtime-*/moby)" state "$ID"; }
expect "the runtime under test holds the container (its state: running)" '"status": *"running"' runtime_state
expect "exec runs in the container (its pid 1 is the shell)" '^ *1 +root +sh -c trap' d exec d1 ps
# exit_status_is N CMD...: CMD exits with status N.
exit_status_is() { local want=$1 rc=0; shift; "$@" || rc=$?; echo "status $rc"; [ "$rc" -eq "$want" ]; }
step "exec reports the process's exit status (7)" exit_status_is 7 d exec d1 sh -c 'exit 7'
# top_matches_cgroup: `docker top` (the runtime's `ps --format json`) lists exactly the pids in the
# container's pids cgroup, at least 2 (the shell and its sleep).
top_matches_cgroup() {
    local from_top from_cg
    from_top=$(d top d1 -o pid | awk 'NR > 1 { print $1 }' | sort -n | tr '\n' ' ')
    from_cg=$(sort -n "/sys/fs/cgroup/pids/$CGP/$ID/cgroup.procs" | tr '\n' ' ')
    echo "docker top: $from_top; cgroup.procs: $from_cg"
    [ -n "$from_top" ] && [ "$from_top" = "$from_cg" ] && [ "$(echo "$from_top" | wc -w)" -ge 2 ]
}
step "top lists exactly the pids in the container's cgroup" top_matches_cgroup
status_is() { [ "$(d inspect -f '{{.State.Status}}' d1)" = "$1" ]; }
freezer_is() { grep -qx "$1" "/sys/fs/cgroup/freezer/$CGP/$ID/freezer.state"; }
pause_d1() { d pause d1 && status_is paused && freezer_is FROZEN; }
unpause_d1() { d unpause d1 && status_is running && freezer_is THAWED; }
step "pause: status paused, freezer cgroup FROZEN" pause_d1
step "unpause: status running, freezer cgroup THAWED" unpause_d1
# update sends `update --resources -` to the runtime; the container's memory cgroup must follow.
mem_limit_is() {
    local got
    got=$(cat "/sys/fs/cgroup/memory/$CGP/$ID/memory.limit_in_bytes")
    echo "memory.limit_in_bytes $got"
    [ "$got" = "$1" ]
}
update_d1() { d update --memory 96m --memory-swap 96m d1 && mem_limit_is 100663296; }
step "update --memory 96m: the container's memory cgroup has that limit" update_d1
step "stop: the container stops" d stop -t 20 d1
expect "stop sent SIGTERM: exit code 3 (the trap's)" '^exited 3$' \
    d inspect -f '{{.State.Status}} {{.State.ExitCode}}' d1
step "rm" d rm d1
# gone_from_runtime ID: no runtime state dir and no cgroup of the container is left.
gone_from_runtime() {
    local f ok=0
    [ -n "$1" ] || { echo "no container id"; return 1; }
    for f in "$EXEC"/runtime-*/moby/"$1" /sys/fs/cgroup/*/"$CGP/$1" /sys/fs/cgroup/unified/"$CGP/$1"; do
        [ -e "$f" ] && { echo "left: $f"; ok=1; }
    done
    return $ok
}
step "rm removed the runtime state and the container's cgroups" gone_from_runtime "$ID"

# --- resources ------------------------------------------------------------------------------------------------
expect "run --memory 64m: the container reads that limit from its memory cgroup" '^67108864$' \
    d run --rm --runtime amphi --memory 64m -v /sys/fs/cgroup/memory:/cgm:ro amphi-e2e/busybox:latest \
    sh -c 'cat "/cgm$(sed -n "s/^[0-9]*:memory://p" /proc/self/cgroup)/memory.limit_in_bytes"'

# --- failure ----------------------------------------------------------------------------------------------------
expect_fail "a missing binary: docker reports the runtime's error" 'OCI runtime create failed: .*/no/such/binary' \
    d run --rm --runtime amphi amphi-e2e/busybox:latest /no/such/binary

# --- wasm -------------------------------------------------------------------------------------------------------
if wasm_steps; then
    HELLO='^Hello from a WebAssembly container run by amphi \(wasmtime\)$'
    expect "load the wasm-plain image" 'Loaded image: amphi-e2e/wasm-plain:latest' load wasm-plain
    expect "wasm-plain with --runtime amphi runs the module (no annotations: detection by content)" "$HELLO" \
        d run --rm --runtime amphi amphi-e2e/wasm-plain:latest
    expect "wasm-plain with --runtime amphi-wasm runs the module (Wasm by the runtime's name)" "$HELLO" \
        d run --rm --runtime amphi-wasm amphi-e2e/wasm-plain:latest
    if out=$(load wasm-compat 2>&1); then
        expect "wasm-compat (platform wasi/wasm) with --runtime amphi runs the module" "$HELLO" \
            d run --rm --runtime amphi amphi-e2e/wasm-compat:latest
    else
        echo "# docker: wasm-compat not run: docker load refuses its platform wasi/wasm: $(echo "$out" | tail -n 1)"
    fi
fi
no_containers() { [ -z "$(d ps -aq)" ] && gone_from_runtime "$ID"; }
step "no container is left in docker" no_containers

e2e_finish
