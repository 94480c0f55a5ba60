#!/bin/sh
# Builds the busybox example bundle: examples/busybox/bundle/{config.json,rootfs/}.
# The rootfs is Debian's busybox-static binary plus one symlink per applet.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bundle="$here/bundle"
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-bundle: $busybox missing: apt-get install busybox-static" >&2; exit 1; }
rm -rf "$bundle"
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/sys" "$bundle/rootfs/dev" \
         "$bundle/rootfs/etc" "$bundle/rootfs/tmp" "$bundle/rootfs/root"
cp "$busybox" "$bundle/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$bundle/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$bundle/rootfs/etc/group"
cp "$here/config.json" "$bundle/config.json"
echo "bundle ready: $bundle"
