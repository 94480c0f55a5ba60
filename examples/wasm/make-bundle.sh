#!/bin/sh
# Builds a wasm example bundle.
#   make-bundle.sh            -> examples/wasm/bundle: rootfs/hello.wat, a WASI preview 1 module as text
#   make-bundle.sh component  -> examples/wasm/bundle-component: rootfs/hello.wasm, the same program as a
#                                WASI preview 2 component (the example make-component, built by examples/build-release.sh)
# The rootfs holds only the workload (plus the mount points); the config has no annotation: amphi
# recognises WebAssembly in process.args[0] and runs it in wasmtime.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = component ]; then
    bundle="$here/bundle-component"
    workload=/hello.wasm
else
    bundle="$here/bundle"
    workload=/hello.wat
fi
rm -rf "$bundle"
mkdir -p "$bundle/rootfs/proc" "$bundle/rootfs/dev" "$bundle/rootfs/sys" "$bundle/rootfs/tmp"
if [ "${1:-}" = component ]; then
    # Built like the amphi of the quick start (examples/build-release.sh), so that the two share one build.
    make_component=$("$here/../build-release.sh" example make-component)
    "$make_component" "$here/hello.wat" "$bundle/rootfs/hello.wasm"
else
    cp "$here/hello.wat" "$bundle/rootfs/hello.wat"
fi
cat > "$bundle/config.json" <<'JSON'
{
  "ociVersion": "1.2.1",
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": ["WORKLOAD"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "amphi-wasm-hello",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] }
  ],
  "linux": {
    "resources": { "memory": { "limit": 134217728 } },
    "namespaces": [
      { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
      { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
    ],
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
    "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON
sed -i "s|WORKLOAD|$workload|" "$bundle/config.json"
echo "bundle ready: $bundle"
