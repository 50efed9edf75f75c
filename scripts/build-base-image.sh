#!/usr/bin/env bash
# Builds berth's Debian base image (bookworm, minbase + openssh-server, sudo, iproute2)
# once per machine: no registry is reachable here, so `FROM debian` cannot be pulled.
# The root filesystem tarball is cached in the data directory; the image is imported
# from it whenever the Docker engine does not have it.
#   usage: scripts/build-base-image.sh [data-dir]      image: berth/debian-sshd:bookworm
set -euo pipefail
cd "$(dirname "$0")/.."
image=berth/debian-sshd:bookworm
cache_dir="${1:-${BERTH_DATA_DIR:-.data}}/cache"
tarball="$cache_dir/debian-sshd-bookworm.tar"

if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
mkdir -p "$cache_dir"
if [[ ! -s $tarball ]]; then
  echo "[setup] building the Debian base image with debootstrap (once per machine, ~1 min)"
  root=$(mktemp -d /tmp/berth-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=openssh-server,sudo,iproute2,procps,passwd \
    bookworm "$root" http://deb.debian.org/debian >/tmp/berth-debootstrap.log 2>&1 ||
    { tail -30 /tmp/berth-debootstrap.log >&2; exit 1; }
  # No host keys in the image: each container or VM gets its own.
  rm -f "$root"/etc/ssh/ssh_host_* "$root"/var/cache/apt/archives/*.deb
  rm -rf "$root"/var/lib/apt/lists/*
  mkdir -p "$root"/run/sshd
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
echo "[setup] importing $image"
docker import "$tarball" "$image" >/dev/null
