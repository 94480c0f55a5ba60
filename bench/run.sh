#!/usr/bin/env bash
# amphi vs runc vs crun on the same bundles, in one run. As root, from anywhere:
#   bench/run.sh [RUNS]          (RUNS per hyperfine command, default 30)
# Env: ROUNDS (default 3: the timed groups are run that many times, each round starting with another
#      runtime, and the runs of all rounds are pooled, so that a busy spell of a shared machine lands on
#      every runtime alike), CONC (containers in the concurrent test, default 50), CONC_RUNS (default 5),
#      RSS_RUNS (default 10),
#      AMPHI (use this binary, with its amphi-full next to it, instead of building both with
#      examples/build-release.sh), SKIP_CALLGRIND=1.
# Writes bench/results/<date>.md (tables), <date>.json (all figures) and <date>.png (chart).
#
# crun 1.8 refuses this host's hybrid cgroup layout (cgroup v1 controllers plus a cgroup2 mount at
# /sys/fs/cgroup/unified holding hugetlb). So every measurement that includes crun runs in a private mount
# namespace (`unshare -m`) where /sys/fs/cgroup/unified is unmounted: crun then sees a plain cgroup v1
# ("legacy") host and uses the same v1 controllers as runc and amphi, which run in that same namespace.
# amphi and runc are also timed on the unchanged host ("hybrid" view) as parallel rows.
# Everything lives in /tmp/amphi-bench.XXXXXX and cgroups under /amphi-bench/; both are removed on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

# ---------------------------------------------------------------- helpers (both phases)
rt_cmd() { # runtime -> command prefix
    case $1 in
    amphi) echo "$amphi --root $work/root/amphi --wasm-cache-dir $work/cache-warm" ;;
    amphi-cold) echo "$amphi --root $work/root/amphi --wasm-cache-dir $work/cache-cold" ;;
    runc) echo "runc --root $work/root/runc" ;;
    crun) echo "crun --root $work/root/crun" ;;
    esac
}
delete_all() { # runtime: force-delete every container in its --root
    local r=$1 d id
    d=$work/root/$r
    [ -d "$d" ] || return 0
    for id in $(ls "$d" 2>/dev/null); do
        [ -d "$d/$id" ] && $(rt_cmd "$r") delete -f "$id" >/dev/null 2>&1 || true
    done
}
fail() { echo "FAILED: $*" | tee -a "$out/failures.txt" >&2; }
rotate() { # round word... -> the words rotated left by round-1 (each round starts with another runtime)
    local k=$(($1 - 1)) n
    shift
    n=$#
    local a=("$@")
    for ((i = 0; i < n; i++)); do echo "${a[$(((i + k) % n))]}"; done
}
hf() { # name hyperfine-args... -> $out/<view>--<name>.r<round>.json
    local name=$1
    shift
    echo "  hyperfine $view/$name" >&2
    hyperfine -N --style basic --warmup 2 --runs "$runs" --export-json "$out/$view--$name.r$round.json" "$@" \
        >"$out/$view--$name.r$round.log" 2>&1 || {
        fail "hyperfine $view/$name (see log below)"
        tail -5 "$out/$view--$name.r$round.log" >&2
    }
}

# The lifecycle groups for the runtimes given: create, start, delete, create+start+delete, run hello.
lifecycle_groups() {
    local r R B H args
    args=()
    for r in "$@"; do
        R=$(rt_cmd "$r") B=$work/bundles/$r-true
        args+=(--prepare "sh -c '$R delete -f b >/dev/null 2>&1; true'" -n "$r" "$R create -b $B b")
    done
    hf create "${args[@]}"
    for r in "$@"; do delete_all "$r"; done
    args=()
    for r in "$@"; do
        R=$(rt_cmd "$r") B=$work/bundles/$r-true
        args+=(--prepare "sh -c '$R delete -f b >/dev/null 2>&1; $R create -b $B b'" -n "$r" "$R start b")
    done
    hf start "${args[@]}"
    for r in "$@"; do delete_all "$r"; done
    args=()
    for r in "$@"; do
        R=$(rt_cmd "$r") B=$work/bundles/$r-true
        args+=(--prepare "sh -c '$R delete -f b >/dev/null 2>&1; $R create -b $B b && $R start b && until $R state b | grep -q stopped; do sleep 0.001; done'"
            -n "$r" "$R delete b")
    done
    hf delete "${args[@]}"
    for r in "$@"; do delete_all "$r"; done
    args=(-n "sh -c true (baseline)" "sh -c true")
    for r in "$@"; do
        R=$(rt_cmd "$r") B=$work/bundles/$r-true
        args+=(-n "$r" "sh -c '$R create -b $B b && $R start b && $R delete -f b'")
    done
    hf cycle "${args[@]}"
    for r in "$@"; do delete_all "$r"; done
    args=()
    for r in "$@"; do
        args+=(-n "$r" "$(rt_cmd "$r") run -b $work/bundles/$r-hello h")
    done
    hf run-hello "${args[@]}"
    for r in "$@"; do delete_all "$r"; done
}

# ---------------------------------------------------------------- inner phase: the "legacy" view
if [ "${AMPHI_BENCH_INNER:-}" = 1 ]; then
    view=legacy
    trap 'for r in amphi runc crun; do delete_all $r; done' EXIT
    if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi
    rts=(amphi runc crun)
    # A read-only bind mount of a binary onto itself (in this private mount namespace only). crun 1.8 and
    # amphi skip their protection against CVE-2019-5736 (a re-exec of themselves: crun from a temporary
    # read-only bind mount of its binary, amphi from a read-only overlay) when their binary is already on a
    # read-only mount, so every group except the "-ro" one runs both binaries as installed (writable).
    # runc 1.1 also needs _LIBCONTAINER_CLONED_BINARY=1 to skip its step.
    ro_bind() { # binary... -> 1 (after undoing what it did) if any bind fails
        local b
        for b in "$@"; do
            if ! { mount --bind "$b" "$b" && mount -o remount,bind,ro "$b" "$b"; }; then
                fail "read-only bind mount of $b"
                ro_unbind "$@"
                return 1
            fi
        done
    }
    ro_unbind() { # binary...: never fatal (a process still running a binary keeps its mount busy)
        local b
        for b in "$@"; do
            while mountpoint -q "$b"; do umount "$b" 2>/dev/null || umount -l "$b" || { fail "umount $b"; break; }; done
        done
    }

    rm -rf "$work/cache-warm"
    for round in $(seq 1 "$rounds"); do
        mapfile -t order < <(rotate "$round" "${rts[@]}")
        echo "== legacy view, round $round/$rounds: lifecycle (${order[*]})" >&2
        lifecycle_groups "${order[@]}"

        echo "== create+start+delete with amphi and crun on read-only bind mounts" >&2
        if ro_bind "$amphi" "$amphi_full" "$(command -v crun)"; then
            args=()
            for r in $(rotate "$round" amphi crun); do
                R=$(rt_cmd "$r") B=$work/bundles/$r-true
                args+=(-n "$r" "sh -c '$R create -b $B b && $R start b && $R delete -f b'")
            done
            hf cycle-ro "${args[@]}"
            # A failed run leaves a container whose init still runs the bound binary: delete first.
            delete_all amphi
            delete_all crun
            ro_unbind "$amphi" "$amphi_full" "$(command -v crun)"
        fi

        echo "== wasm hello vs linux hello (amphi)" >&2
        # Three slices of ceil(RUNS/3) runs (and 2 warm-up runs) per round, each slice starting with
        # another kind, so that a busy spell of the shared host (they last seconds) lands on all three
        # alike: in ten back-to-back hyperfine calls of 30 runs each, the cached/Linux ratio of these
        # ~10 ms commands ranged from 0.97 to 1.21 on this machine.
        for slice in 1 2 3; do
            args=()
            for w in $(rotate "$slice" linux cold cached); do
                case $w in
                linux) args+=(-n "amphi linux hello" --prepare true "$(rt_cmd amphi) run -b $work/bundles/amphi-hello h") ;;
                cold) args+=(-n "amphi wasm hello, cold" --prepare "rm -rf $work/cache-cold" "$(rt_cmd amphi-cold) run -b $work/bundles/amphi-wasm w") ;;
                cached) args+=(-n "amphi wasm hello, cached" --prepare true "$(rt_cmd amphi) run -b $work/bundles/amphi-wasm w") ;;
                esac
            done
            runs=$(((runs + 2) / 3)) round=$round.$slice hf wasm "${args[@]}"
        done
        delete_all amphi

        echo "== binary start-up (--version)" >&2
        args=()
        for r in "${order[@]}"; do
            case $r in amphi) args+=(-n amphi "$amphi --version") ;; *) args+=(-n "$r" "$r --version") ;; esac
        done
        hf version "${args[@]}"
    done

    echo "== $conc concurrent containers" >&2
    for r in "${rts[@]}"; do
        hyperfine -N --style basic --runs "$conc_runs" \
            --prepare "sh -c 'for i in \$(seq 1 $conc); do $(rt_cmd $r) delete -f c\$i >/dev/null 2>&1; done; true'" \
            --export-json "$out/$view--concurrent-$r.json" -n "$r" \
            "bash $here/concurrent.sh $conc $work/conc/$r $(rt_cmd $r)" >"$out/$view--concurrent-$r.log" 2>&1 ||
            fail "concurrent $r: $(tail -3 "$out/$view--concurrent-$r.log")"
        delete_all "$r"
    done

    echo "== peak RSS of create (GNU time %M)" >&2
    for r in "${rts[@]}" amphi-wasm; do
        R=$(rt_cmd "${r%-wasm}") B=$work/bundles/$r-true
        [ "$r" = amphi-wasm ] && B=$work/bundles/amphi-wasm
        for i in $(seq 1 "$rss_runs"); do
            $R delete -f b >/dev/null 2>&1 || true
            /usr/bin/time -f %M -a -o "$out/rss-$r.txt" $R create -b "$B" b >/dev/null 2>&1 || fail "rss create $r"
        done
        $R delete -f b >/dev/null 2>&1 || true
    done

    echo "== CPU time and page faults of one cycle (perf stat, software events)" >&2
    for r in "${rts[@]}"; do
        R=$(rt_cmd "$r") B=$work/bundles/$r-true
        perf stat -x, -r "$runs" -e task-clock,page-faults,context-switches -o "$out/perf-$r.csv" -- \
            sh -c "$R create -b $B b && $R start b && $R delete -f b" >/dev/null 2>&1 || fail "perf stat $r"
        delete_all "$r"
    done
    # The same for amphi's `run` of the Linux and the Wasm hello: CPU time does not depend on how busy the
    # machine's other CPU is, where the wall-clock ratio does (a loaded machine runs the processes of one
    # `run` one after another instead of side by side, so the wall ratio drifts toward this one).
    for w in linux:amphi-hello wasm-cached:amphi-wasm; do
        perf stat -x, -r "$runs" -e task-clock,page-faults,context-switches -o "$out/perfrun-${w%%:*}.csv" -- \
            $(rt_cmd amphi) run -b "$work/bundles/${w#*:}" h >/dev/null 2>&1 || fail "perf stat run ${w%%:*}"
        delete_all amphi
    done

    if [ "${SKIP_CALLGRIND:-}" != 1 ]; then
        echo "== instruction counts of one cycle (callgrind)" >&2
        # Output goes to $work/out/cg/<runtime>, which the *-cg bundles bind-mount at the same path, so the
        # container's init (after pivot_root) can still write its profile. Counters are inherited across
        # fork, so callgrind dumps (and zeroes) before every fork/clone/exec; the total is the sum of all
        # parts. The bundles carry no rlimits: valgrind refuses any change of RLIMIT_NOFILE's hard limit.
        # runc and crun re-exec themselves through a file descriptor (a memfd copy or a temporary read-only
        # bind mount), which valgrind cannot follow; with _LIBCONTAINER_CLONED_BINARY=1 and a read-only
        # binary they skip that step (so their counts exclude it). runc still re-execs /proc/self/exe for `runc init`, which under valgrind names valgrind's
        # own tool binary and fails to load: runc cannot be counted.
        trig=()
        for f in fork _Fork __libc_fork vfork __vfork clone __clone clone3 __clone3 __clone_internal \
            execve execvp execvpe fexecve execveat syscall; do trig+=(--dump-before="$f"); done
        cg() { # runtime label bundle commands...
            local r=$1 label=$2 b=$3 d=$work/out/cg/$1-$2 R
            shift 3
            R=$(rt_cmd "$r")
            mkdir -p "$d"
            for c in "$@"; do
                case $c in
                create) set -- $R create -b "$b" cg ;;
                start) set -- $R start cg ;;
                delete) set -- $R delete -f cg ;;
                run) set -- $R run -b "$b" cg ;;
                esac
                if ! _LIBCONTAINER_CLONED_BINARY=1 valgrind --tool=callgrind --trace-children=yes \
                    --trace-children-skip='*/true,true,*/echo,echo' "${trig[@]}" --callgrind-out-file="$d/$c.%p" \
                    "$@" >"$d/log.$c" 2>&1; then
                    # A partial count is no count: report.py leaves out a directory with FAILED in it.
                    fail "callgrind $r $label $c"
                    tail -n 3 "$d/log.$c" | tr '\n' ' ' >"$d/FAILED"
                    break
                fi
                if [ "$c" = start ]; then # wait (10 s at most) for the container's `true` to end
                    for _ in $(seq 1000); do $R state cg 2>/dev/null | grep -q stopped && break; sleep 0.01; done
                fi
            done
            $R delete -f cg >/dev/null 2>&1 || true
        }
        ulimit -Sn "$(ulimit -Hn)"
        ro_bind "$(command -v crun)" "$(command -v runc)" || true
        cg amphi cycle "$work/bundles/amphi-cg" create start delete
        cg crun cycle "$work/bundles/crun-cg" create start delete
        cg amphi hello "$work/bundles/amphi-cg-hello" run
        cg amphi wasm-cached "$work/bundles/amphi-cg-wasm" run
    fi
    exit 0
fi

# ---------------------------------------------------------------- outer phase
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in hyperfine runc crun valgrind gnuplot python3 unshare perf busybox; do
    command -v $t >/dev/null || { echo "missing: $t (apt-get install it)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing: GNU time (apt-get install time)" >&2; exit 1; }
runs=${1:-30}
conc=${CONC:-50} conc_runs=${CONC_RUNS:-5} rss_runs=${RSS_RUNS:-10} rounds=${ROUNDS:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive number, not '$rounds'" >&2; exit 1; }
if [ -n "${AMPHI:-}" ]; then
    amphi=$AMPHI
else
    # The static release build that README installs (examples/build-release.sh prints its path).
    amphi=$("$repo/examples/build-release.sh") || { echo "examples/build-release.sh failed" >&2; exit 1; }
fi
# amphi hands create, run and exec to amphi-full, which a build puts next to it.
amphi_full=$(dirname "$amphi")/amphi-full
[ -x "$amphi_full" ] || { echo "no amphi-full next to $amphi (build both: examples/build-release.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/amphi-bench.XXXXXX)
out=$work/out
mkdir -p "$out" "$work/root" "$work/out/cg"
cleanup() {
    set +e
    for r in amphi runc; do delete_all $r; done
    # Anything left (e.g. crun containers if the inner phase was killed): kill the processes in our
    # cgroups by pid, then remove the cgroups, deepest first.
    for d in /sys/fs/cgroup/*/amphi-bench /sys/fs/cgroup/unified/amphi-bench; do
        [ -d "$d" ] || continue
        for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    sleep 0.2
    for d in /sys/fs/cgroup/*/amphi-bench /sys/fs/cgroup/unified/amphi-bench; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every runtime runs from a copy in $work/bin whose pages were dropped from the page cache, so each is
# read back from disk at its first start, as after a boot. How a binary came into the page cache
# changes its start-up: pages just written (by cp, dpkg or the linker) sit in larger folios than
# pages faulted in from disk, and more of them are mapped per page fault. On this VM amphi-full ran
# `delete -f` in 1.02 ms of CPU from a fresh copy and in 1.22 ms from the same bytes read back, and
# runc --version took 3.2 against 3.9 ms. Without the copies the figures depended on each binary's
# history (a fresh build, an install, a reboot), differently for each runtime.
mkdir -p "$work/bin"
cp "$amphi" "$work/bin/amphi"
cp "$amphi_full" "$work/bin/amphi-full"
cp "$(command -v runc)" "$(command -v crun)" "$work/bin/"
sync "$work/bin/"* # written back first: dirty pages cannot be dropped
for f in "$work/bin/"*; do dd if="$f" iflag=nocache count=0 status=none; done
amphi=$work/bin/amphi amphi_full=$work/bin/amphi-full
PATH=$work/bin:$PATH
export work out amphi amphi_full runs conc conc_runs rss_runs rounds PATH

# Bundles: one busybox rootfs and one Wasm rootfs shared (read-only) by all bundles; per runtime and use
# its own cgroupsPath under /amphi-bench/. ociVersion 1.0.2 because crun 1.8 refuses newer versions.
mkdir -p "$work/rootfs/bin" "$work/rootfs-wasm"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in sh true echo; do ln -s busybox "$work/rootfs/bin/$a"; done
for d in rootfs rootfs-wasm; do mkdir -p "$work/$d/proc" "$work/$d/dev" "$work/$d/sys" "$work/$d/tmp" "$work/$d$work/out/cg"; done
cp "$repo/examples/wasm/hello.wat" "$work/rootfs-wasm/hello.wat"
(cd "$work" && "$amphi" spec && mv config.json spec.json)
python3 - "$work" "$conc" <<'PY'
import json, os, sys
work, conc = sys.argv[1], int(sys.argv[2])
spec = json.load(open(f"{work}/spec.json"))
def bundle(path, rootfs, cgroup, args, cg=False):
    c = json.loads(json.dumps(spec))
    c["ociVersion"] = "1.0.2"
    c["root"] = {"path": f"{work}/{rootfs}", "readonly": True}
    c["process"]["terminal"] = False
    c["process"]["args"] = args
    c["linux"]["cgroupsPath"] = f"/amphi-bench/{cgroup}"
    if cg:
        c["process"].pop("rlimits", None)
        c["mounts"].append({"destination": f"{work}/out/cg", "type": "bind", "source": f"{work}/out/cg",
                            "options": ["rbind", "rw"]})
    os.makedirs(path, exist_ok=True)
    json.dump(c, open(f"{path}/config.json", "w"), indent=1)
for r in ("amphi", "runc", "crun"):
    bundle(f"{work}/bundles/{r}-true", "rootfs", f"{r}-true", ["true"])
    bundle(f"{work}/bundles/{r}-hello", "rootfs", f"{r}-hello", ["echo", "hello"])
    bundle(f"{work}/bundles/{r}-cg", "rootfs", f"{r}-cg", ["true"], cg=True)
    for i in range(1, conc + 1):
        bundle(f"{work}/conc/{r}/c{i}", "rootfs", f"{r}-conc/c{i}", ["true"])
bundle(f"{work}/bundles/amphi-wasm", "rootfs-wasm", "amphi-wasm", ["/hello.wat"])
bundle(f"{work}/bundles/amphi-cg-hello", "rootfs", "amphi-cg-hello", ["echo", "hello"], cg=True)
bundle(f"{work}/bundles/amphi-cg-wasm", "rootfs-wasm", "amphi-cg-wasm", ["/hello.wat"], cg=True)
PY

echo "== hybrid view (the host as it is): lifecycle (amphi runc; crun refuses this host)" >&2
view=hybrid
for round in $(seq 1 "$rounds"); do
    mapfile -t order < <(rotate "$round" amphi runc)
    echo "   round $round/$rounds (${order[*]})" >&2
    lifecycle_groups "${order[@]}"
done
crun --root "$work/root/crun" run -b "$work/bundles/crun-hello" h >"$out/crun-hybrid.txt" 2>&1 || true

unshare -m --propagation private env AMPHI_BENCH_INNER=1 bash "$0" "$runs"

# Sizes, versions and host facts for the report.
{
    echo "amphi_bytes=$(stat -c %s "$amphi")"
    echo "amphi_full_bytes=$(stat -c %s "$amphi_full")"
    echo "runc_bytes=$(stat -c %s "$(command -v runc)")"
    echo "crun_bytes=$(stat -c %s "$(command -v crun)")"
    echo "amphi_libs=$(ldd "$amphi" 2>/dev/null | grep -c '=>')"
    echo "runc_libs=$(ldd "$(command -v runc)" | grep -c '=>')"
    echo "crun_libs=$(ldd "$(command -v crun)" | grep -c '=>')"
    echo "amphi_version=$("$amphi" --version | head -1)"
    echo "amphi_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet HEAD -- src executors Cargo.toml 2>/dev/null || echo +dirty)"
    echo "amphi_profile=$(sed -n '/^\[profile.release\]/,/^\[/p' "$repo/Cargo.toml" | grep '=' | tr '\n' ' ')"
    link() { file -b "$1" | grep -o 'static-pie linked\|dynamically linked\|statically linked' || echo unknown; }
    echo "amphi_link=amphi $(link "$amphi"), amphi-full $(link "$amphi_full")"
    echo "runc_version=$(runc --version | head -1)"
    echo "crun_version=$(crun --version | head -1)"
    echo "hyperfine_version=$(hyperfine --version)"
    echo "kernel=$(uname -r)"
    echo "cpus=$(nproc)"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/facts.txt"
python3 "$here/report.py" "$out" "$here/results" || {
    keep=/tmp/amphi-bench-raw.$(date +%s)
    cp -r "$out" "$keep"
    echo "report.py failed; raw results kept in $keep (report.py $keep/out-dir ...)" >&2
    exit 1
}
