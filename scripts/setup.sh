#!/usr/bin/env bash
# Installs whatever berth needs and is missing, then returns. Safe to run any number of
# times; when nothing is missing it takes well under a second. `npm start` and `npm test`
# both call it first.
#   - system packages via apt-get (only as root; otherwise it says what to install)
#   - npm dependencies (npm ci when package-lock.json changed)
#   - the Prisma client (prisma generate when schema.prisma changed)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

# --- system packages ---------------------------------------------------------------------
# command → Debian package that provides it
declare -A PROVIDERS=(
  [mariadbd]=mariadb-server
  [setpriv]=util-linux         # the embedded MariaDB dies with berth (parent-death signal)
  [dockerd]=docker.io          # the test machines (sshd containers) and, later, image builds
  [debootstrap]=debootstrap    # the Debian base image, built locally: no registry is reachable
  [curl]=curl                  # scripts/ensure-docker.sh pings the engine
  [qemu-system-x86_64]=qemu-system-x86   # VMs (microvm machine type, TCG when KVM does not work)
  [qemu-img]=qemu-utils        # per-VM copy-on-write overlays over a read-only base
  [mkfs.ext4]=e2fsprogs        # image root filesystem -> ext4 base
  [cpio]=cpio                  # the VM initramfs
  [xz]=xz-utils                # unpacking the kernel's compressed payload
  [ssh-keygen]=openssh-client  # the key tests check berth's keys with OpenSSH itself
  [nft]=nftables               # BERTH_VM_EGRESS=internet: guests kept off this host's own addresses
  [caddy]=caddy                # HTTPS in front of berth: the tests go through the committed Caddyfile
  [docker-compose]=docker-compose   # the compose deployment test (Debian has compose v1 only)
  [gcc]=gcc                    # berth-guest, the static tool that applies a VM's identity inside it
  [strace]=strace              # its test watches what it asks of the kernel
)
missing=()
for cmd in "${!PROVIDERS[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd ]]; then
    missing+=("${PROVIDERS[$cmd]}")
  fi
done
# The VM initramfs needs a *static* busybox (busybox-static), not the dynamic one.
busybox_kind=$(LC_ALL=C ldd /bin/busybox 2>&1 || true)   # ldd fails, saying so, on a static binary
[[ $busybox_kind == *"not a dynamic executable"* ]] || missing+=(busybox-static)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing system packages: ${missing[*]}"
    say "install them with: sudo apt-get install -y ${missing[*]}   (or run this as root)"
    exit 1
  fi
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the user guests run as ---------------------------------------------------------------
# Under BERTH_VM_EGRESS=internet QEMU drops root for this user before the guest runs, and
# one nftables rule refuses its packets to this host's own addresses (src/infra/vm/isolation.ts).
if [[ $(id -u) -eq 0 ]] && ! id -u berth-vm >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin berth-vm
fi

# --- npm dependencies --------------------------------------------------------------------
# npm keeps a copy of the lock it installed in node_modules/.package-lock.json.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# --- Prisma client -----------------------------------------------------------------------
# `prisma generate` needs no schema engine, but the CLI insists on a path to one; any
# executable will do because generation never runs it.
schema_hash=$(cat prisma/schema.prisma package-lock.json | sha256sum | cut -d' ' -f1)
stamp=src/generated/prisma/.schema-hash
if [[ ! -f $stamp || $(cat "$stamp") != "$schema_hash" ]]; then
  say "generating the Prisma client"
  PRISMA_SCHEMA_ENGINE_BINARY="${PRISMA_SCHEMA_ENGINE_BINARY:-$(type -P true)}" \
    PRISMA_HIDE_UPDATE_MESSAGE=1 node node_modules/prisma/build/index.js generate >/tmp/berth-prisma-generate.log 2>&1 || { cat /tmp/berth-prisma-generate.log; exit 1; }
  echo "$schema_hash" >"$stamp"
fi

# --- workspace packages (clients/) ------------------------------------------------------
# Each is compiled to its dist/ when the hash of its inputs changes (kept in dist/.source-hash).
#   build_workspace DIR PACKAGE WHAT HASH
build_workspace() {
  local stamp=$1/dist/.source-hash
  if [[ ! -f $stamp || $(cat "$stamp") != "$4" ]]; then
    say "building $3 ($1)"
    rm -rf "$1/dist"
    npm run --silent build --workspace "$2"
    echo "$4" >"$stamp"
  fi
}

# The TypeScript client: the tests, and other packages of this repository, import it as the
# package @berth/client.
client_hash=$(cat clients/typescript/package.json clients/typescript/tsconfig.json clients/typescript/src/*.ts \
  clients/typescript/src/generated/*.ts package-lock.json | sha256sum | cut -d' ' -f1)
build_workspace clients/typescript @berth/client 'the TypeScript client' "$client_hash"

# `berth`, the command line, rebuilt also when the client it is typed against changes, so the
# command runs on plain Node: `npx berth` here, or `npm install -g ./clients/cli`.
cli_hash=$( { echo "$client_hash"; find clients/cli/src -name '*.ts' -print0 | sort -z | xargs -0 cat;
  cat clients/cli/package.json clients/cli/tsconfig.json; } | sha256sum | cut -d' ' -f1)
build_workspace clients/cli @berth/cli 'the command line' "$cli_hash"

# --- VM kernel ---------------------------------------------------------------------------
# Debian's kernel for the VMs, fetched and unpacked into the cache once per machine (never
# installed into /boot). Without it berth still runs; only VMs are unavailable.
bash scripts/fetch-kernel.sh >/dev/null || say "could not fetch the VM kernel: VMs will be unavailable until it can be"
