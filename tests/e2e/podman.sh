#!/bin/bash
# podman.sh: podman 4.3 drives the runtime under test (amphi) end to end, with Linux and Wasm images.
#
#   bash tests/e2e/podman.sh                       as root, from the repository; amphi = target/debug/amphi
#   AMPHI_E2E_RUNTIME=/usr/sbin/runc AMPHI_E2E_LINUX_ONLY=1 bash tests/e2e/podman.sh
#                                                  the same Linux steps with runc (shows the suite is sound)
#
# Needs (Debian packages): podman (with conmon, catatonit), util-linux (script), and for the images
# (tests/e2e/images.sh) umoci, busybox-static, wabt. No registry and no network are used.
#
# podman runs with a test copy of examples/engines/containers.conf (the runtime paths point at this run's
# binary, under the names podman knows: amphi, and amphi-wasm beside it) plus test-only settings:
#   - private state: storage (vfs driver: no overlay mounts) and tmp_dir under the work dir, file locks
#     instead of podman's host-wide /dev/shm/libpod_lock, events in a file under the work dir;
#   - netns "none": a private network namespace without CNI/netavark, so no bridge, no /run/netns entry;
#   - default_ulimits lowered: this host has no CAP_SYS_RESOURCE, and podman's default RLIMIT_NOFILE and
#     RLIMIT_NPROC (1048576, 4194304) exceed the hard limits, so every runtime (runc too) fails with EPERM;
#   - every container and pod gets --cgroup-parent /<work dir name>, so that all its cgroups (including
#     podman's conmon cgroup) sit under one tree this script removes.
# Everything is removed on exit, success or failure: containers and pods (podman rm/pod rm), stray conmon
# processes of this run (by pid), mounts under the work dir, the cgroup tree, the host paths podman creates
# whatever its configuration (/var/lib/containers/cache, /run/containers/networks) when they were not there
# before, the work dir.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
e2e_init podman

for tool in podman conmon script; do
    command -v "$tool" >/dev/null || { echo "podman.sh: $tool is missing (apt-get install podman)" >&2; exit 2; }
done

e2e_images

# The runtime under the names podman knows. With AMPHI_E2E_RUNTIME=runc the name "amphi" runs runc.
BIN=$E2E_WORK/bin
mkdir -p "$BIN"
ln -s "$(readlink -f "$E2E_RUNTIME")" "$BIN/amphi"
ln -s amphi "$BIN/amphi-wasm"
RT_VERSION=$("$E2E_RUNTIME" --version | head -n 1)

# The test copy of the shipped containers.conf, and a private storage.conf. The ulimits stay at or below
# this host's hard limits (see the header).
hard_limit() { local h; h=$(ulimit -H "$1"); if [ "$h" = unlimited ] || [ "$h" -gt "$2" ]; then echo "$2"; else echo "$h"; fi; }
NOFILE=$(hard_limit -n 4096)
NPROC=$(hard_limit -u 32768)
export CONTAINERS_CONF=$E2E_WORK/containers.conf CONTAINERS_STORAGE_CONF=$E2E_WORK/storage.conf
sed -e "s|/usr/local/bin/amphi|$BIN/amphi|" \
    -e "/^\\[containers\\]\$/a netns = \"none\"\\ndefault_ulimits = [\"nofile=$NOFILE:$NOFILE\", \"nproc=$NPROC:$NPROC\"]" \
    -e "/^\\[engine\\]\$/a runtime = \"amphi\"\\ntmp_dir = \"$E2E_WORK/tmp\"\\nlock_type = \"file\"\\nevents_logfile_path = \"$E2E_WORK/events.log\"\\nimage_copy_tmp_dir = \"$E2E_WORK/tmp\"" \
    "$E2E_REPO/examples/engines/containers.conf" >"$CONTAINERS_CONF"
printf '\n[network]\nnetwork_config_dir = "%s/networks"\n' "$E2E_WORK" >>"$CONTAINERS_CONF"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/runroot"\n' "$E2E_WORK" "$E2E_WORK" \
    >"$CONTAINERS_STORAGE_CONF"
mkdir -p "$E2E_WORK/tmp"

CG=/$(basename "$E2E_WORK")
BB=localhost/amphi-e2e/busybox:latest
WC=localhost/amphi-e2e/wasm-compat:latest
WP=localhost/amphi-e2e/wasm-plain:latest

pm() { podman "$@"; }
# prun ARGS...: podman run with this run's cgroup parent.
prun() { podman run --cgroup-parent "$CG" "$@"; }

# Cleanup, in reverse order of these lines: containers and pods, then stray processes of this run, mounts
# under the work dir, and the cgroup tree (depth first, every hierarchy).
# our_pids: processes of this run (conmon, podman's "container cleanup" exit commands): their command
# line names a path in the work dir. (The pattern's "[/]" keeps grep's own command line from matching.)
our_pids() { grep -l "${E2E_WORK//./\\.}[/]" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3; }
cleanup_processes() {
    local p
    wait_until 10 test -z "$(our_pids)"
    for p in $(our_pids); do kill -9 "$p" 2>/dev/null; done
    return 0
}
# podman writes two host paths whatever its configuration (c/image's blob-info cache and netavark's run
# dir); remove the ones this run created.
HOST_PATHS=(/var/lib/containers/cache/blob-info-cache-v1.boltdb /var/lib/containers/cache /var/lib/containers
    /run/containers/networks /run/containers)
CREATED=()
for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] || CREATED+=("$p"); done
cleanup_host_paths() {
    local p
    for p in "${CREATED[@]}"; do
        if [ -d "$p" ]; then rmdir "$p" 2>/dev/null; else rm -f "$p"; fi
    done
    return 0
}
defer cleanup_host_paths
defer remove_cgroup_tree "$CG"
defer unmount_under "$E2E_WORK"
defer cleanup_processes
defer "podman rm --all --force --time 0"
defer "podman pod rm --all --force --time 0"

# ---- images and runtime ------------------------------------------------------------------------------
load_images() {
    local f
    for f in busybox wasm-compat wasm-plain; do pm load -q -i "$E2E_IMAGES/$f.oci.tar" || return 1; done
    pm images --format '{{.Repository}}:{{.Tag}}'
}
expect "load the OCI archives (podman load)" "amphi-e2e/wasm-plain:latest" load_images
info_runtime() {
    local got
    got=$(pm info --format '{{.Host.OCIRuntime.Name}}: {{.Host.OCIRuntime.Version}}') || return 1
    got=${got%%$'\n'*}
    echo "$got"
    [ "$got" = "amphi: $RT_VERSION" ] && echo "runtime is the one under test"
}
expect "podman info reports the runtime" "^runtime is the one under test$" info_runtime

# ---- run --rm ----------------------------------------------------------------------------------------
run_rm() {
    local out
    out=$(prun --rm --name e2e-rm "$BB" sh -c 'echo "hello from $(cat /proc/1/comm) as $(id -un)"; exit 0') || return 1
    echo "$out"
    [ -z "$(pm ps -a -q --filter name=e2e-rm)" ] || { echo "container still listed after --rm"; return 1; }
}
expect "run --rm prints the container's output and removes it" "^hello from sh as root$" run_rm
run_exit() { prun --rm "$BB" sh -c 'exit 42'; [ $? -eq 42 ] && echo "exit status 42"; }
expect "run --rm returns the container's exit status" "^exit status 42$" run_exit

# ---- run -d, exec, stop, rm --------------------------------------------------------------------------
expect "run -d starts a container with the runtime" "^running amphi$" sh -c \
    "podman run -d --cgroup-parent '$CG' --name e2e-top '$BB' sh -c 'trap \"echo got-term; exit 0\" TERM; while :; do sleep 0.1; done' >/dev/null &&
     podman inspect --format '{{.State.Status}} {{.OCIRuntime}}' e2e-top"
expect "exec runs in the container (sees its pid 1)" "^exec-ok pid1=sh$" \
    pm exec e2e-top sh -c 'echo "exec-ok pid1=$(cat /proc/1/comm)"'
# runtime_supports_json lists amphi: podman has conmon pass the runtime --log-format=json and a log file.
json_log() {
    local cpid
    cpid=$(pm inspect --format '{{.State.ConmonPid}}' e2e-top) || return 1
    tr '\0' ' ' <"/proc/$cpid/cmdline" | grep -o -- '--runtime-arg --log-format=json --runtime-arg --log'
}
expect "podman runs the runtime with --log-format=json (runtime_supports_json)" "log-format=json" json_log
exec_status() { pm exec e2e-top sh -c 'exit 7'; [ $? -eq 7 ] && echo "exec status 7"; }
expect "exec returns the process's exit status" "^exec status 7$" exec_status
stop_ctr() {
    pm stop --time 20 e2e-top >/dev/null || return 1
    pm inspect --format 'state={{.State.Status}} code={{.State.ExitCode}}' e2e-top
    pm logs e2e-top
}
# SIGTERM reached the trap (exit 0 and "got-term"), not the SIGKILL after the timeout.
expect "stop delivers SIGTERM; the container exits 0" "state=exited code=0" stop_ctr
expect "the stopped container logged its SIGTERM trap" "^got-term$" pm logs e2e-top
rm_ctr() { pm rm e2e-top >/dev/null && [ -z "$(pm ps -a -q --filter name=e2e-top)" ] && echo removed; }
expect "rm removes the stopped container" "^removed$" rm_ctr

# ---- pause / unpause -----------------------------------------------------------------------------------
# The container prints a counter every 0.1 s; the last line of its log is the progress.
last_line() { pm logs e2e-pause 2>/dev/null | tail -n 1; }
prun -d --name e2e-pause "$BB" sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done' >/dev/null
pause_ctr() {
    local a b
    wait_until 10 test -n "$(last_line)" || { echo "no progress before pause"; return 1; }
    pm pause e2e-pause >/dev/null || return 1
    [ "$(pm inspect --format '{{.State.Status}}' e2e-pause)" = paused ] || { echo "state is not paused"; return 1; }
    sleep 0.3; a=$(last_line); sleep 1; b=$(last_line)
    [ -n "$a" ] && [ "$a" = "$b" ] && echo "counter stopped at $a"
}
expect "pause: state paused and progress stops" "counter stopped at" pause_ctr
unpause_ctr() {
    local a
    a=$(last_line)
    pm unpause e2e-pause >/dev/null || return 1
    [ "$(pm inspect --format '{{.State.Status}}' e2e-pause)" = running ] || { echo "state is not running"; return 1; }
    wait_until 10 sh -c "[ \"\$(podman logs e2e-pause 2>/dev/null | tail -n 1)\" -gt '$a' ]" &&
        echo "counter moved on from $a to $(last_line)"
}
expect "unpause: state running and progress resumes" "counter moved on" unpause_ctr
pm rm --force --time 0 e2e-pause >/dev/null 2>&1

# ---- --memory ------------------------------------------------------------------------------------------
# memory_limit PID: the limit of the memory cgroup PID is in, read on the host (cgroup v1 or v2).
memory_limit() {
    local path
    path=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' "/proc/$1/cgroup")
    if [ -n "$path" ]; then cat "/sys/fs/cgroup/memory$path/memory.limit_in_bytes"
    else cat "/sys/fs/cgroup$(awk -F: '$1 == 0 { print $3 }' "/proc/$1/cgroup")/memory.max"; fi
}
memory_cgroup() {
    local pid
    prun -d --name e2e-mem --memory 64m "$BB" sleep 1000 >/dev/null || return 1
    pid=$(pm inspect --format '{{.State.Pid}}' e2e-mem) || return 1
    echo "host: memory limit $(memory_limit "$pid") in $(grep -E ':memory:|^0::' "/proc/$pid/cgroup" | head -n 1)"
    pm rm --force --time 0 e2e-mem >/dev/null
}
expect "--memory 64m lands in the container's memory cgroup" "^host: memory limit 67108864 in .*$CG/" memory_cgroup
# A process allocating past the limit (tail keeps a line with no newline in memory) is killed by the
# memory cgroup's OOM killer (SIGKILL: status 137) and the cgroup counts the kill.
oom_kill() {
    prun --rm --memory 32m --memory-swap 32m "$BB" sh -c \
        'tail /dev/zero; echo "status=$?"; cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null | grep -w oom_kill'
}
expect "--memory: a process allocating past the limit is OOM-killed (137)" "^status=137$" oom_kill
expect "--memory: the container's memory cgroup counted the OOM kill" "^oom_kill [1-9]" oom_kill

# ---- -it with a terminal -------------------------------------------------------------------------------
# script(1) gives podman a terminal (33 rows, 111 columns); the typed lines go to the container's shell.
tty_session() {
    printf 'tty\nstty size\nexit 3\n' |
        timeout 60 script -qec "stty rows 33 cols 111; podman run -it --rm --cgroup-parent '$CG' '$BB' sh" /dev/null |
        tr -d '\r'
    echo "exit=${PIPESTATUS[1]}"
}
TTY_OUT=$(tty_session 2>&1)
expect "-it: the container's stdin, stdout are a terminal" "^/dev/pts/[0-9]+$" echo "$TTY_OUT"
expect "-it: the terminal has the caller's size (stty size)" "^33 111$" echo "$TTY_OUT"
expect "-it: the shell's exit status comes back" "^exit=3$" echo "$TTY_OUT"

# ---- a pod ---------------------------------------------------------------------------------------------
pod_create() {
    pm pod create --name e2e-pod --cgroup-parent "$CG" >/dev/null || return 1
    pm run -d --pod e2e-pod --name e2e-inpod "$BB" sleep 1000 >/dev/null || return 1
    pm pod inspect --format 'pod={{.State}}' e2e-pod
}
expect "pod create + a container in it: the pod runs" "^pod=Running$" pod_create
infra_ctr() {
    local infra
    infra=$(pm pod inspect --format '{{.InfraContainerID}}' e2e-pod) || return 1
    pm inspect --format 'infra {{.State.Status}} {{.OCIRuntime}} {{.Path}} {{.ImageName}}' "$infra"
}
# podman builds its pause image locally from /usr/libexec/podman/catatonit: no registry is needed.
expect "the pod's infra container runs catatonit from a locally built image" \
    "^infra running amphi /catatonit localhost/podman-pause:" infra_ctr
pod_ns() {
    local infra ipid cpid ns
    infra=$(pm pod inspect --format '{{.InfraContainerID}}' e2e-pod) || return 1
    ipid=$(pm inspect --format '{{.State.Pid}}' "$infra") || return 1
    cpid=$(pm inspect --format '{{.State.Pid}}' e2e-inpod) || return 1
    for ns in uts ipc net; do
        [ "$(readlink "/proc/$ipid/ns/$ns")" = "$(readlink "/proc/$cpid/ns/$ns")" ] || { echo "$ns differs"; return 1; }
    done
    echo "container joined the infra's uts ipc net namespaces; hostname=$(pm exec e2e-inpod hostname)"
}
expect "the container shares the pod's namespaces" "joined.*hostname=e2e-pod$" pod_ns
pod_rm() {
    pm pod rm --force --time 0 e2e-pod >/dev/null || return 1
    [ -z "$(pm pod ps -q)" ] && [ -z "$(pm ps -a -q)" ] && echo "pod and its containers removed"
}
expect "pod rm -f removes the pod and its containers" "removed" pod_rm

# ---- error behaviour -------------------------------------------------------------------------------------
# podman reads the runtime's error from its --log-format json log file and classifies it by the message.
missing_cmd() {
    prun --rm "$BB" "$@" 2>&1
    echo "exit=$?"
}
missing_abs() {
    local out
    out=$(missing_cmd /no/such/cmd)
    echo "$out"
    echo "$out" | grep -q '"msg"' && { echo "raw JSON shown"; return 1; }
    echo "$out" | grep -q '^exit=127$' &&
        echo "$out" | grep -Eq '^Error: .*/no/such/cmd.*OCI runtime attempted to invoke a command that was not found$'
}
step "missing command (path): podman shows the runtime's message, exit 127" missing_abs
missing_path() {
    local out
    out=$(missing_cmd nosuchcmd)
    echo "$out"
    echo "$out" | grep -q '^exit=127$' &&
        echo "$out" | grep -Eq '^Error: .*nosuchcmd.*OCI runtime attempted to invoke a command that was not found$'
}
step "missing command (\$PATH): podman shows the runtime's message, exit 127" missing_path
not_executable() {
    local out
    out=$(missing_cmd /etc/passwd)
    echo "$out"
    echo "$out" | grep -q '^exit=126$' && echo "$out" | grep -Eq '^Error: .*/etc/passwd.*OCI permission denied$'
}
step "not executable: podman shows the runtime's message, exit 126" not_executable

# ---- Wasm images -----------------------------------------------------------------------------------------
if wasm_steps; then
    HELLO="^Hello from a WebAssembly container run by amphi"
    wasm_compat() {
        prun --name e2e-wasm "$WC" 2>/dev/null || return 1
        pm inspect --format 'annotation={{index .Config.Annotations "module.wasm.image/variant"}} runtime={{.OCIRuntime}}' e2e-wasm
        pm rm e2e-wasm >/dev/null
    }
    expect "wasm image by annotation (runtime amphi): runs the module" "$HELLO" wasm_compat
    expect "wasm image by annotation: podman copied the manifest annotation" "^annotation=compat runtime=amphi$" \
        wasm_compat
    expect "plain wasm image through the amphi-wasm runtime name" "$HELLO" prun --rm --runtime amphi-wasm "$WP"
    expect "plain wasm image with runtime amphi (detected by content)" "$HELLO" prun --rm --runtime amphi "$WP"
    # podman 4.3 uses --platform only to choose the image (os/arch of its config); it has no setting that
    # maps a platform to a runtime, so wasi/wasm is paired with the runtime name amphi-wasm on the command
    # line, as crun-wasm is. With the default runtime amphi the image's annotation selects Wasm instead.
    expect "--platform wasi/wasm --runtime amphi-wasm" "$HELLO" \
        prun --rm --platform wasi/wasm --runtime amphi-wasm "$WC"
    expect "--platform wasi/wasm with the default runtime amphi (annotation)" "$HELLO" \
        prun --rm --platform wasi/wasm "$WC"
fi

# ---- nothing left behind -----------------------------------------------------------------------------------
leftovers() {
    local left
    pm rm --all --force --time 0 >/dev/null 2>&1
    left=$(pm ps -a -q; pm pod ps -q)
    [ -z "$left" ] || { echo "podman still lists: $left"; return 1; }
    remove_cgroup_tree "$CG"
    left=$(find /sys/fs/cgroup -maxdepth 3 -name "$(basename "$CG")")
    [ -z "$left" ] || { echo "cgroups left: $left"; return 1; }
    left=$(grep -F "$E2E_WORK" /proc/self/mountinfo)
    [ -z "$left" ] || { echo "mounts left: $left"; return 1; }
    echo clean
}
expect "no containers, pods or cgroups left" "^clean$" leftovers

e2e_finish
