#!/bin/bash
# images.sh OUTDIR: build, with no registry, the three OCI archives the engine end-to-end scripts use.
#
#   OUTDIR/busybox.oci.tar      amphi-e2e/busybox:latest      linux/amd64, busybox-static and its applet
#                               links (/bin/sh ...), Cmd ["/bin/sh"]; also the CRI pod sandbox ("pause")
#                               image when the caller gives `sleep 2147483647` as args.
#   OUTDIR/wasm-compat.oci.tar  amphi-e2e/wasm-compat:latest  wasi/wasm, /hello.wasm (examples/wasm/hello.wat
#                               compiled by wat2wasm), Entrypoint ["/hello.wasm"], manifest annotation
#                               module.wasm.image/variant=compat.
#   OUTDIR/wasm-plain.oci.tar   amphi-e2e/wasm-plain:latest   linux/amd64, the same module and Entrypoint, no
#                               annotation (an image built FROM scratch: the runtime detects Wasm by content).
#
# The archives are in the oci-archive format skopeo reads and writes (a tar of an OCI image layout whose
# index.json names the image by the annotation org.opencontainers.image.ref.name, e.g.
# "amphi-e2e/busybox:latest"). They are built with umoci, which touches nothing outside its layout (buildah
# and skopeo would leave /var/lib/containers/cache and /run/containers/networks behind).
# Needs (Debian packages): umoci, busybox-static, wabt. Its temp dir is removed on exit, success or failure.
set -euo pipefail

out=${1:?usage: images.sh OUTDIR}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d /tmp/amphi-e2e-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || busybox=/bin/busybox
[ -x "$busybox" ] || { echo "images.sh: busybox-static is not installed (apt-get install busybox-static)" >&2; exit 2; }
for tool in umoci wat2wasm; do
    command -v "$tool" >/dev/null || { echo "images.sh: $tool is missing (apt-get install umoci wabt)" >&2; exit 2; }
done

# The busybox root file system: /bin/busybox, one symbolic link per applet at its usual place
# (busybox --list-full), the directories a runtime mounts onto, and minimal passwd/group files.
rootfs=$work/busybox-rootfs
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,var,run}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

mkdir -p "$work/wasm"
wat2wasm "$repo/examples/wasm/hello.wat" -o "$work/wasm/hello.wasm"
chmod 0755 "$work/wasm/hello.wasm"

# build NAME SOURCE TARGET [umoci config options...]: an image amphi-e2e/NAME:latest with one layer holding
# SOURCE (a file or a directory's content) at TARGET, written to OUTDIR/NAME.oci.tar.
build() {
    local name=$1 src=$2 dst=$3; shift 3
    local layout=$work/layout-$name
    umoci init --layout "$layout"
    umoci new --image "$layout:latest"
    umoci insert --image "$layout:latest" --history.created_by "images.sh: $name" "$src" "$dst"
    umoci config --image "$layout:latest" --history.created_by "images.sh: $name" "$@"
    # umoci tags the manifest "latest"; the archive names it by the full reference, as skopeo does.
    sed -i "s|\"org.opencontainers.image.ref.name\":\"latest\"|\"org.opencontainers.image.ref.name\":\"amphi-e2e/$name:latest\"|" \
        "$layout/index.json"
    grep -q "amphi-e2e/$name:latest" "$layout/index.json" || { echo "images.sh: cannot name $name" >&2; exit 1; }
    rm -f "$out/$name.oci.tar"
    tar -C "$layout" -cf "$out/$name.oci.tar" oci-layout index.json blobs
}

build busybox "$rootfs" / --os linux --architecture amd64 --config.cmd /bin/sh \
    --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin
build wasm-compat "$work/wasm/hello.wasm" /hello.wasm --os wasi --architecture wasm \
    --config.entrypoint /hello.wasm --manifest.annotation module.wasm.image/variant=compat
build wasm-plain "$work/wasm/hello.wasm" /hello.wasm --os linux --architecture amd64 \
    --config.entrypoint /hello.wasm

ls -l "$out"/busybox.oci.tar "$out"/wasm-compat.oci.tar "$out"/wasm-plain.oci.tar >&2
