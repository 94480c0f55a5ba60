# Shared helpers of the engine end-to-end scripts (tests/e2e/*.sh). Source it; do not run it.
#
# Each engine script:  . "$(dirname "$0")/lib.sh"; e2e_init <engine>; ...; step "what" cmd args...; e2e_finish
# Output is TAP-like: "ok N - <engine>: what" / "not ok N - <engine>: what" (the command's output is shown
# for failures), then "# <engine>: P passed, F failed". e2e_finish returns non-zero when a step failed.
#
# Environment: AMPHI_E2E_RUNTIME  the runtime binary under test (default: target/debug/amphi of this repo);
#              AMPHI_E2E_IMAGES   directory with the OCI archives made by images.sh (default: made on demand);
#              AMPHI_E2E_LINUX_ONLY=1  skip the Wasm steps (used when the same suite runs with runc).

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_PASS=0
E2E_FAIL=0
E2E_N=0
E2E_CLEANUP=()

# e2e_init NAME: a private work dir ($E2E_WORK), made the current directory, and an EXIT trap that runs
# every `defer`red command in reverse order, then removes the work dir.
e2e_init() {
    E2E_NAME=$1
    E2E_WORK=$(mktemp -d "/tmp/amphi-e2e-$1.XXXXXX")
    E2E_RUNTIME=${AMPHI_E2E_RUNTIME:-$E2E_REPO/target/debug/amphi}
    case $E2E_RUNTIME in /*) ;; *) E2E_RUNTIME=$PWD/$E2E_RUNTIME ;; esac
    case ${AMPHI_E2E_IMAGES:-/} in /*) ;; *) AMPHI_E2E_IMAGES=$PWD/$AMPHI_E2E_IMAGES ;; esac
    [ -x "$E2E_RUNTIME" ] || { echo "runtime $E2E_RUNTIME is not an executable (cargo build first)" >&2; exit 2; }
    trap e2e_cleanup EXIT
    # A signal ends the script through `exit`, so the EXIT trap cleans up (podman handles SIGINT itself:
    # without this bash would carry on after Ctrl-C).
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # Engines' helpers write into their working directory (conmon leaves an `oom` marker file there
    # after an OOM kill): run them from the work dir, which is removed at exit.
    cd "$E2E_WORK" || exit 2
}

# defer CMD...: run CMD at exit (even after a failure). Later defers run first.
defer() { E2E_CLEANUP+=("$*"); }

e2e_cleanup() {
    local i
    # Cleanup must not be cut short: a second signal would leave daemons, mounts or cgroups behind.
    trap '' INT TERM HUP
    for ((i = ${#E2E_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${E2E_CLEANUP[$i]}" >/dev/null 2>&1 || true
    done
    rm -rf "$E2E_WORK"
}

# step WHAT CMD...: run CMD, record ok / not ok.
step() {
    local what=$1; shift
    local out
    E2E_N=$((E2E_N + 1))
    if out=$("$@" 2>&1); then
        E2E_PASS=$((E2E_PASS + 1)); echo "ok $E2E_N - $E2E_NAME: $what"
    else
        E2E_FAIL=$((E2E_FAIL + 1)); echo "not ok $E2E_N - $E2E_NAME: $what"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/#   /'
    fi
}

# expect WHAT PATTERN CMD...: run CMD; ok when it succeeds and its output matches the grep -E PATTERN.
expect() {
    local what=$1 pat=$2; shift 2
    local out
    E2E_N=$((E2E_N + 1))
    if out=$("$@" 2>&1) && printf '%s\n' "$out" | grep -Eq -- "$pat"; then
        E2E_PASS=$((E2E_PASS + 1)); echo "ok $E2E_N - $E2E_NAME: $what"
    else
        E2E_FAIL=$((E2E_FAIL + 1)); echo "not ok $E2E_N - $E2E_NAME: $what (wanted /$pat/)"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/#   /'
    fi
}

# wasm_steps: true unless AMPHI_E2E_LINUX_ONLY=1.
wasm_steps() { [ "${AMPHI_E2E_LINUX_ONLY:-0}" != 1 ]; }

# wait_until SECONDS CMD...: poll CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_until() {
    local limit=$(( $1 * 5 )); shift
    local i
    for ((i = 0; i < limit; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

# e2e_images: sets E2E_IMAGES to a directory holding busybox.oci.tar, wasm-compat.oci.tar and
# wasm-plain.oci.tar (see images.sh), building them once into the work dir when AMPHI_E2E_IMAGES is unset.
e2e_images() {
    if [ -n "${AMPHI_E2E_IMAGES:-}" ]; then E2E_IMAGES=$AMPHI_E2E_IMAGES; return; fi
    E2E_IMAGES=$E2E_WORK/images
    "$E2E_REPO/tests/e2e/images.sh" "$E2E_IMAGES" >&2
}

# unmount_under DIR: lazily unmount every mount at or below DIR, deepest first.
unmount_under() {
    local m
    awk -v w="$1" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    return 0
}

# remove_cgroup_tree PATH: remove the cgroup PATH (with or without a leading /) and everything below it,
# depth first, in every hierarchy (v1 controllers, a hybrid host's cgroup2 dir, a pure-v2 root).
remove_cgroup_tree() {
    local d p=${1#/}
    for d in /sys/fs/cgroup/*/"$p" /sys/fs/cgroup/"$p"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}

# kill_cgroup_children PATH: SIGKILL every process in the child cgroups of PATH (pids hierarchy, v1).
kill_cgroup_children() {
    local f pid
    for f in /sys/fs/cgroup/pids/"${1#/}"/*/cgroup.procs; do
        [ -f "$f" ] || continue
        for pid in $(cat "$f"); do kill -KILL "$pid" 2>/dev/null; done
    done
    return 0
}

# shim_pids SOCKET: the pids of containerd shims started for the containerd listening at SOCKET (their
# command line has `-address SOCKET`); kill_shims SOCKET sends them SIGKILL.
shim_pids() {
    local d
    for d in /proc/[0-9]*; do
        case $(cat "$d/comm" 2>/dev/null) in containerd-shim*) ;; *) continue ;; esac
        tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF -- "$1" && echo "${d#/proc/}"
    done
}
kill_shims() {
    local p
    for p in $(shim_pids "$1"); do kill -KILL "$p" 2>/dev/null; done
    return 0
}

# e2e_finish: print the counts; non-zero status when a step failed.
e2e_finish() {
    echo "# $E2E_NAME: $E2E_PASS passed, $E2E_FAIL failed"
    [ "$E2E_FAIL" -eq 0 ]
}

# expect_fail WHAT PATTERN CMD...: run CMD; ok when it fails (non-zero status) and its output matches the
# grep -E PATTERN (an error an engine must report). Added for containerd.sh / docker.sh.
expect_fail() {
    local what=$1 pat=$2; shift 2
    local out rc=0
    E2E_N=$((E2E_N + 1))
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && printf '%s\n' "$out" | grep -Eq -- "$pat"; then
        E2E_PASS=$((E2E_PASS + 1)); echo "ok $E2E_N - $E2E_NAME: $what"
    else
        E2E_FAIL=$((E2E_FAIL + 1)); echo "not ok $E2E_N - $E2E_NAME: $what (wanted failure, status $rc, /$pat/)"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/#   /'
    fi
}
