#!/usr/bin/env bash
# Times amphi against runc on the same busybox bundle (create, start, delete, and the whole cycle), and
# amphi's Wasm hello (cold: empty AOT cache; cached) against its busybox hello, with hyperfine.
# Run as root from the repository: bench/lifecycle.sh [RUNS]   (needs: runc hyperfine busybox-static)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
amphi=$PWD/target/release/amphi
runc=$(command -v runc)
work=$(mktemp -d /tmp/amphi-bench.XXXXXX)
trap 'for r in amphi runc; do for id in $(ls $work/$r-root 2>/dev/null); do [ $r = amphi ] && $amphi --root $work/amphi-root delete -f $id || $runc --root $work/runc-root delete -f $id; done; done; rm -rf $work' EXIT
[ -x "$amphi" ] || cargo build --release

make_bundle() { # dir cgroup args-json
    mkdir -p "$1/rootfs/bin"
    cp /bin/busybox "$1/rootfs/bin/"
    for a in sh true echo; do ln -sf busybox "$1/rootfs/bin/$a"; done
    mkdir -p "$1/rootfs/proc" "$1/rootfs/dev" "$1/rootfs/sys"
    (cd "$1" && "$amphi" spec)
    python3 - "$1/config.json" "$2" "$3" <<'PY'
import json, sys
p, cg, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = args
c["linux"]["cgroupsPath"] = cg
json.dump(c, open(p, "w"))
PY
}
make_bundle "$work/b-amphi" /amphi-bench/amphi '["true"]'
make_bundle "$work/b-runc" /amphi-bench/runc '["true"]'
make_bundle "$work/b-hello" /amphi-bench/hello '["echo","hello"]'
make_bundle "$work/b-wasm" /amphi-bench/wasm '["/hello.wat"]'
cp examples/wasm/hello.wat "$work/b-wasm/rootfs/hello.wat"

A="$amphi --root $work/amphi-root --wasm-cache-dir $work/cache"
R="$runc --root $work/runc-root"
hf() { hyperfine -N --style basic --runs "$runs" --export-markdown "$work/$1.md" "${@:2}" >/dev/null; cat "$work/$1.md"; echo; }

echo "## create (busybox true)"
hf create --prepare "$A delete -f a" -n amphi "$A create -b $work/b-amphi a" \
          --prepare "$R delete -f r" -n runc "$R create -b $work/b-runc r"
echo "## start"
hf start --prepare "sh -c '$A delete -f a; $A create -b $work/b-amphi a'" -n amphi "$A start a" \
         --prepare "sh -c '$R delete -f r; $R create -b $work/b-runc r'" -n runc "$R start r"
echo "## delete (a stopped container)"
hf delete --prepare "sh -c '$A delete -f a; $A create -b $work/b-amphi a; $A start a; sleep 0.01'" -n amphi "$A delete a" \
          --prepare "sh -c '$R delete -f r; $R create -b $work/b-runc r; $R start r; sleep 0.01'" -n runc "$R delete r"
echo "## create + start + delete"
hf cycle -n amphi "sh -c '$A create -b $work/b-amphi a && $A start a && $A delete -f a'" \
         -n runc "sh -c '$R create -b $work/b-runc r && $R start r && $R delete -f r'"
echo "## run: busybox hello vs wasm hello (cold: empty cache; cached)"
# hyperfine applies a single --prepare to every command: give each command its own.
hf run --prepare true -n "amphi busybox hello" "$A run -b $work/b-hello h" \
       --prepare "rm -rf $work/cache" -n "amphi wasm hello, cold" "$A run -b $work/b-wasm w" \
       --prepare true -n "amphi wasm hello, cached" "$A run -b $work/b-wasm w" \
       --prepare true -n "runc busybox hello" "$R run -b $work/b-hello h"
for d in /sys/fs/cgroup/*/amphi-bench /sys/fs/cgroup/unified/amphi-bench; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done
