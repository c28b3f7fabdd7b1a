#!/usr/bin/env bash
# Builds a minimal root filesystem for the `shoal` image from a locally built
# binary and the shared libraries it links, so the image can be built `FROM
# scratch` on a machine where no base image can be pulled.
#
#   deploy/docker/make-rootfs.sh /var/tmp/shoal-target/debug/shoal deploy/docker/build/rootfs
set -euo pipefail
binary=${1:?usage: make-rootfs.sh BINARY OUTDIR}
out=${2:?usage: make-rootfs.sh BINARY OUTDIR}
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc" "$out/tmp" "$out/data" "$out/etc/shoal"
chmod 1777 "$out/tmp"
cp "$binary" "$out/usr/local/bin/shoal"
# Every library the binary loads, and the dynamic loader, at their own paths.
for lib in $(ldd "$binary" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
# Name resolution (compose service names) and a user database for the runtime.
printf 'root:x:0:0:root:/root:/sbin/nologin\nshoal:x:1000:1000:shoal:/data:/sbin/nologin\n' > "$out/etc/passwd"
printf 'root:x:0:\nshoal:x:1000:\n' > "$out/etc/group"
printf 'hosts: files dns\n' > "$out/etc/nsswitch.conf"
echo "root filesystem for $(basename "$binary") in $out ($(du -sh "$out" | cut -f1))"
