#!/usr/bin/env bash
# Fetches Debian's amd64 kernel package (never installed: /boot is left alone), unpacks
# it into the cache, extracts the uncompressed vmlinux (boots ~5 s faster under TCG than
# the bzImage) and keeps the modules the VM initramfs loads. Idempotent; prints the
# directory holding `vmlinux`, `version` and `modules/`.
#   usage: scripts/fetch-kernel.sh [data-dir]      (BERTH_CACHE_DIR, when set, wins: <it>/kernel)
set -euo pipefail
cache="${BERTH_CACHE_DIR:-${1:-${BERTH_DATA_DIR:-.data}}/cache}/kernel"
meta=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $meta ]]; then
  [[ $(id -u) -eq 0 ]] && apt-get update -qq && meta=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n $meta ]] || { echo "[setup] cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
version=${meta#linux-image-}            # e.g. 6.1.0-56-amd64
out="$cache/$version"
# The modules the VM initramfs loads (src/infra/vm/boot-artifacts.ts loads them in this order).
modules=(virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net virtio_console crc16 crc32c_generic mbcache jbd2 ext4)
complete() { [[ -s $out/vmlinux ]] || return 1; for m in "${modules[@]}"; do [[ -f $out/modules/$m.ko ]] || return 1; done; }
if complete; then echo "$out"; exit 0; fi

echo "[setup] fetching kernel $version (once per machine)" >&2
work=$(mktemp -d /tmp/berth-kernel.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "linux-image-$version-unsigned" >/dev/null 2>&1 || apt-get download "linux-image-$version" >/dev/null)
dpkg -x "$work"/*.deb "$work/root"
mkdir -p "$out.tmp/modules"
# The bzImage carries the kernel as an xz stream; its start is the xz magic FD 37 7A 58 5A 00.
vmlinuz=$(ls "$work"/root/boot/vmlinuz-*)
offset=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$vmlinuz" | head -1 | cut -d: -f1)
tail -c +$((offset + 1)) "$vmlinuz" | xz -dc >"$out.tmp/vmlinux" 2>/dev/null || true
[[ $(head -c 4 "$out.tmp/vmlinux" | od -An -c | tr -d ' ') == '177ELF' ]] || { echo "[setup] could not extract vmlinux" >&2; exit 1; }
for m in "${modules[@]}"; do
  find "$work/root/lib/modules" -name "$m.ko" -exec cp {} "$out.tmp/modules/" \;
done
echo "$version" >"$out.tmp/version"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
