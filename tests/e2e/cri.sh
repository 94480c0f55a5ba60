#!/usr/bin/env bash
# The Kubernetes RuntimeClass path: containerd 1.6's CRI plugin with a runtime handler "amphi" (the runc
# shim io.containerd.runc.v2 with BinaryName = the runtime under test), driven by tests/e2e/cri-client, a
# small CRI gRPC client playing the kubelet's part (crictl is not packaged in Debian 12).
#
# Run as root from the repository: bash tests/e2e/cri.sh   (see lib.sh for AMPHI_E2E_RUNTIME,
# AMPHI_E2E_IMAGES, AMPHI_E2E_LINUX_ONLY). Needs (Debian packages): containerd, umoci, protobuf-compiler
# (for the client's build), plus what images.sh needs (buildah, busybox-static, wabt); cargo.
#
# What it proves, from the outside:
#  - pod "linux" (no annotations): the sandbox runs; a busybox container logs a line to its CRI log file,
#    runs in the pod's cgroup parent, answers ExecSync (stdout and exit codes), gets SIGTERM on
#    StopContainer (its trap's exit code is reported); a short container's exit code is reported; a Wasm
#    image with no annotation (wasm-plain) runs as Wasm, detected by content;
#  - pod "wasm" (pod annotation module.wasm.image/variant=compat): its pause container runs natively
#    (process `sleep`, amphi's state says executor "linux") although its config.json carries the wasm
#    annotation next to io.kubernetes.cri.container-type=sandbox; the wasm-compat container's output is in
#    its log file and its exit code is 0;
#  - stop and remove of containers and pods leave no container in containerd nor in the runtime's state.
#
# Test configuration specific to this host (see the containerd config written below):
#  - restrict_oom_score_adj = true: the CRI sandbox's oom_score_adj of -998 needs CAP_SYS_RESOURCE, which
#    this machine does not give (it fails with runc too);
#  - host-network pods (NamespaceOption.network = NODE), so no CNI plugin runs and no netns is made;
#  - cgroupfs (SystemdCgroup = false) with pod cgroups under /amphi-e2e-cri, removed at exit;
#  - apparmor disabled in the CRI plugin so that no profile is loaded into the kernel.
# containerd runs with private root, state, socket and runtime root under the work dir, and is stopped by
# pid; the pods are removed, stray shims of this instance killed by pid, mounts under the work dir
# unmounted, at exit (success or failure).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
e2e_init cri

W=$E2E_WORK
RT=$E2E_RUNTIME
SOCK=$W/containerd.sock
CGROUP_PARENT=/amphi-e2e-cri
CLIENT_DIR=$E2E_REPO/tests/e2e/cri-client
CLIENT=$CLIENT_DIR/target/release/cri-client
RT_ROOT=$W/runtime-root
BUNDLES=$W/state/io.containerd.runtime.v2.task/k8s.io
is_amphi() { [ "$(basename "$RT")" = amphi ] || [ "$(basename "$RT")" = amphi-wasm ]; }

cri() { "$CLIENT" --socket "$SOCK" "$@"; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

# --- cleanup, registered first so that it runs last -------------------------------------------------------
remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup/*/*"$CGROUP_PARENT"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
}
delete_runtime_leftovers() {
    # Containers the runtime still knows of (only if containerd could not remove its pods).
    local id
    for id in $(ls "$RT_ROOT/k8s.io" 2>/dev/null); do "$RT" --root "$RT_ROOT/k8s.io" delete --force "$id"; done
}
remove_all_pods() {
    local p
    for p in $(cri pods 2>/dev/null); do cri stopp "$p"; cri rmp "$p"; done
}
stop_containerd() {
    [ -n "${CTRD_PID:-}" ] && kill -0 "$CTRD_PID" 2>/dev/null || return 0
    kill "$CTRD_PID"
    wait_until 20 sh -c "! kill -0 $CTRD_PID" || kill -9 "$CTRD_PID"
    wait "$CTRD_PID" 2>/dev/null
    return 0
}
# critical: stop here (cleanup runs) when the step just run failed, as nothing after it can work.
critical() {
    [ "$E2E_FAIL" -eq "${1:?}" ] || { echo "# cri: a step the rest depends on failed; stopping"; e2e_finish; exit 1; }
}
defer remove_cgroups
defer unmount_under "$W"
defer kill_shims "$SOCK"
defer delete_runtime_leftovers
defer stop_containerd
defer remove_all_pods

# --- the client, images, containerd ---------------------------------------------------------------------
need_tools() {
    local t missing=""
    for t in containerd ctr containerd-shim-runc-v2 umoci protoc cargo; do
        command -v "$t" >/dev/null || missing="$missing $t"
    done
    [ -z "$missing" ] || { echo "missing:$missing (apt-get install containerd umoci protobuf-compiler; cargo)"; return 1; }
}
step "the tools are installed (containerd, umoci, protoc, cargo)" need_tools
critical 0
step "build the CRI client (cargo build --release, tests/e2e/cri-client)" \
    cargo build --quiet --release --manifest-path "$CLIENT_DIR/Cargo.toml"
critical 0

e2e_images
# The pod sandbox ("pause") image: busybox whose Entrypoint/Cmd is `sleep 2147483647` (containerd runs the
# sandbox image's own entrypoint + cmd; the CRI gives it no arguments).
make_pause() {
    mkdir -p "$W/pause" && tar -C "$W/pause" -xf "$E2E_IMAGES/busybox.oci.tar" &&
        umoci config --image "$W/pause:amphi-e2e/busybox:latest" --tag amphi-e2e/pause:latest \
            --config.entrypoint /bin/sleep --config.cmd 2147483647 &&
        umoci rm --image "$W/pause:amphi-e2e/busybox:latest" && umoci gc --layout "$W/pause" &&
        tar -C "$W/pause" -cf "$W/pause.oci.tar" . && rm -rf "$W/pause"
}
step "make the pause image from busybox.oci.tar (umoci: Entrypoint sleep 2147483647)" make_pause
critical 0

mkdir -p "$W/cni/bin" "$W/cni/net.d" "$W/logs" "$RT_ROOT"
cat >"$W/config.toml" <<EOF
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$W/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/amphi-e2e/pause:latest"
  # This host has no CAP_SYS_RESOURCE: the sandbox's oom_score_adj -998 would fail with any runtime.
  restrict_oom_score_adj = true
  # No AppArmor profile is loaded into the kernel by the test.
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    # Empty: the test's pods use the host network, so no CNI plugin runs.
    bin_dir = "$W/cni/bin"
    conf_dir = "$W/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    # The default runtime (unused by the test's pods), with a private state root.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$W/runc-root"
    # The runtime entry of examples/engines/containerd-config.toml, with the runtime under test and a
    # private runtime state root.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.amphi]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["module.wasm.image/*", "run.oci.handler"]
      container_annotations = ["module.wasm.image/*", "run.oci.handler"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.amphi.options]
        BinaryName = "$RT"
        Root = "$RT_ROOT"
        SystemdCgroup = false
EOF

containerd --config "$W/config.toml" --log-level info >"$W/containerd.log" 2>&1 &
CTRD_PID=$!
expect "containerd (private root, state and socket) answers CRI Version" \
    'runtime_name=containerd .*runtime_api_version=v1' \
    sh -c "for i in \$(seq 100); do [ -S '$SOCK' ] && '$CLIENT' --socket '$SOCK' version && exit 0; sleep 0.2; done; grep -E 'level=(error|fatal|warning)' '$W/containerd.log' | tail -n 20; exit 1"
critical 0

# import NAME FILE [ctr import options]: import the OCI archive into the k8s.io namespace, named both as in
# the archive (amphi-e2e/NAME:latest) and as the CRI normalises it (docker.io/amphi-e2e/NAME:latest).
import() {
    local name=$1 file=$2; shift 2
    ctr_ images import "$@" "$file" &&
        { ctr_ images ls -q | grep -qx "docker.io/amphi-e2e/$name:latest" ||
            ctr_ images tag "amphi-e2e/$name:latest" "docker.io/amphi-e2e/$name:latest"; }
}
step "import the pause image into k8s.io" import pause "$W/pause.oci.tar"
step "import busybox.oci.tar into k8s.io" import busybox "$E2E_IMAGES/busybox.oci.tar"
if wasm_steps; then
    step "import wasm-compat.oci.tar (wasi/wasm) into k8s.io" import wasm-compat \
        "$E2E_IMAGES/wasm-compat.oci.tar" --all-platforms
    step "import wasm-plain.oci.tar into k8s.io" import wasm-plain "$E2E_IMAGES/wasm-plain.oci.tar"
fi
expect "CRI ImageStatus sees the pause image" 'id=sha256:' cri image amphi-e2e/pause:latest

# --- pod "linux": no annotations ------------------------------------------------------------------------
mkdir -p "$W/logs/linux"
POD_L=$(cri runp linux --save "$W/pod-linux.json" --handler amphi --cgroup-parent "$CGROUP_PARENT/pod-linux" \
    --log-dir "$W/logs/linux" 2>"$W/runp-linux.err")
step "RunPodSandbox linux (runtime_handler amphi)" sh -c "[ -n '$POD_L' ] || { cat '$W/runp-linux.err'; tail -n 30 '$W/containerd.log'; exit 1; }"
expect "PodSandboxStatus linux: ready, handler amphi" 'state=SANDBOX_READY runtime_handler=amphi' \
    cri inspectp "$POD_L"

# pid_of CTR: the host pid of a container's init (ContainerStatus verbose info).
pid_of() { cri status "$1" | sed -n 's/.* pid=\([0-9]*\) .*/\1/p'; }

CTR_L=$(cri create "$POD_L" "$W/pod-linux.json" busybox amphi-e2e/busybox:latest --log busybox.log -- \
    sh -c 'trap "echo got-sigterm; exit 7" TERM; echo hello-from-cri-linux | tee /tmp/hello; while :; do sleep 1; done' \
    2>"$W/create.err")
step "CreateContainer busybox in pod linux" sh -c "[ -n '$CTR_L' ] || { cat '$W/create.err'; exit 1; }"
step "StartContainer busybox" cri start "$CTR_L"
expect "ContainerStatus busybox: running" 'state=CONTAINER_RUNNING' cri status "$CTR_L"
step "busybox's stdout is in its CRI log file" \
    wait_until 10 grep -q 'stdout F hello-from-cri-linux' "$W/logs/linux/busybox.log"
in_pod_cgroup() {
    local pid
    pid=$(pid_of "$CTR_L")
    [ -n "$pid" ] && grep -E ":$CGROUP_PARENT/pod-linux/$CTR_L\$" "/proc/$pid/cgroup"
}
step "busybox runs in the pod's cgroup parent ($CGROUP_PARENT/pod-linux/<id>)" in_pod_cgroup
expect "ExecSync in busybox: reads the file its main process wrote, exit code 0" \
    '^hello-from-cri-linux exit_code=0 $' \
    sh -c "'$CLIENT' --socket '$SOCK' exec '$CTR_L' -- cat /tmp/hello | tr '\n' ' '"
expect "ExecSync in busybox: a failing command's exit code (3)" '^exit_code=3$' \
    cri exec "$CTR_L" -- sh -c 'exit 3'
expect "ExecSync sees the container's own PID namespace (its init is pid 1: sh)" '^sh$' \
    cri exec "$CTR_L" -- sh -c 'cat /proc/1/comm'
step "StopContainer busybox (SIGTERM, 10 s grace)" cri stop "$CTR_L" 10
expect "ContainerStatus busybox: exited with its SIGTERM trap's code 7" 'state=CONTAINER_EXITED exit_code=7 ' \
    cri status "$CTR_L"
step "the trap ran (got-sigterm in the log)" grep -q 'stdout F got-sigterm' "$W/logs/linux/busybox.log"
step "RemoveContainer busybox" cri rm "$CTR_L"
step "busybox's cgroup is gone" sh -c "[ -n '$CTR_L' ] && ! ls -d /sys/fs/cgroup/*$CGROUP_PARENT/pod-linux/$CTR_L 2>/dev/null"

CTR_X=$(cri create "$POD_L" "$W/pod-linux.json" exit5 amphi-e2e/busybox:latest --log exit5.log -- \
    sh -c 'echo bye; exit 5' 2>"$W/create.err")
step "CreateContainer + StartContainer a short-lived busybox" \
    sh -c "[ -n '$CTR_X' ] && '$CLIENT' --socket '$SOCK' start '$CTR_X' || { cat '$W/create.err'; exit 1; }"
expect "ContainerStatus: exit code 5" 'state=CONTAINER_EXITED exit_code=5 ' cri wait "$CTR_X" 20
step "RemoveContainer exit5" cri rm "$CTR_X"

if wasm_steps; then
    CTR_P=$(cri create "$POD_L" "$W/pod-linux.json" wasm-plain amphi-e2e/wasm-plain:latest --log wasm-plain.log \
        2>"$W/create.err")
    step "CreateContainer + StartContainer wasm-plain (no annotation) in pod linux" \
        sh -c "[ -n '$CTR_P' ] && '$CLIENT' --socket '$SOCK' start '$CTR_P' || { cat '$W/create.err'; exit 1; }"
    expect "wasm-plain exits 0" 'state=CONTAINER_EXITED exit_code=0 ' cri wait "$CTR_P" 30
    step "wasm-plain's output (detected as Wasm by content) is in its log file" \
        grep -q 'stdout F Hello from a WebAssembly container run by amphi' "$W/logs/linux/wasm-plain.log"
    step "RemoveContainer wasm-plain" cri rm "$CTR_P"
fi

step "StopPodSandbox linux" cri stopp "$POD_L"
step "RemovePodSandbox linux" cri rmp "$POD_L"

# --- pod "wasm": the pod carries module.wasm.image/variant=compat -----------------------------------------
mkdir -p "$W/logs/wasm"
POD_W=$(cri runp wasm --save "$W/pod-wasm.json" --handler amphi --cgroup-parent "$CGROUP_PARENT/pod-wasm" \
    --log-dir "$W/logs/wasm" --annotation module.wasm.image/variant=compat 2>"$W/runp-wasm.err")
step "RunPodSandbox wasm (pod annotation module.wasm.image/variant=compat)" \
    sh -c "[ -n '$POD_W' ] || { cat '$W/runp-wasm.err'; tail -n 30 '$W/containerd.log'; exit 1; }"
expect "PodSandboxStatus wasm: ready, handler amphi" 'state=SANDBOX_READY runtime_handler=amphi' \
    cri inspectp "$POD_W"
step "the pause container's config.json carries the wasm annotation and container-type=sandbox" \
    sh -c "grep -q '\"module.wasm.image/variant\": *\"compat\"' '$BUNDLES/$POD_W/config.json' &&
           grep -q '\"io.kubernetes.cri.container-type\": *\"sandbox\"' '$BUNDLES/$POD_W/config.json'"
sandbox_native() {
    local pid comm
    pid=$(cat "$BUNDLES/$POD_W/init.pid") || return 1
    comm=$(cat "/proc/$pid/comm") || return 1
    echo "sandbox pid $pid comm $comm exe $(readlink "/proc/$pid/exe")"
    [ "$comm" = sleep ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qx '/bin/sleep 2147483647 *'
}
step "the pause container runs natively (its process is /bin/sleep 2147483647)" sandbox_native
if is_amphi; then
    expect "amphi chose the Linux executor for the pause container (state.json)" '"executor": *"linux"' \
        cat "$RT_ROOT/k8s.io/$POD_W/state.json"
fi

if wasm_steps; then
    CTR_W=$(cri create "$POD_W" "$W/pod-wasm.json" hello amphi-e2e/wasm-compat:latest --log hello.log \
        2>"$W/create.err")
    step "CreateContainer wasm-compat in pod wasm" sh -c "[ -n '$CTR_W' ] || { cat '$W/create.err'; exit 1; }"
    step "StartContainer wasm-compat" cri start "$CTR_W"
    expect "ContainerStatus wasm-compat: exited 0" 'state=CONTAINER_EXITED exit_code=0 ' cri wait "$CTR_W" 30
    step "the Wasm module's output is in the container's log file" \
        grep -q 'stdout F Hello from a WebAssembly container run by amphi (wasmtime)' "$W/logs/wasm/hello.log"
    step "RemoveContainer wasm-compat" cri rm "$CTR_W"
fi

step "StopPodSandbox wasm" cri stopp "$POD_W"
step "RemovePodSandbox wasm" cri rmp "$POD_W"

expect "no pod and no container left in containerd" '^none$' sh -c "
    cri() { '$CLIENT' --socket '$SOCK' \"\$@\"; }; out=\$(cri pods && cri ps) || exit 1; echo \"\${out:-none}\""
expect "no container left in the runtime's state ($RT list)" '^ID' sh -c \
    "out=\$('$RT' --root '$RT_ROOT/k8s.io' list 2>&1); echo \"\$out\"; [ \$(printf '%s\n' \"\$out\" | wc -l) -le 1 ]"
step "stop containerd (by pid)" stop_containerd
expect "no shim of this containerd instance is left" '^none$' sh -c 'echo "${1:-none}"' _ "$(shim_pids "$SOCK")"

e2e_finish
