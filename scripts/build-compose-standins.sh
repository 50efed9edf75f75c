#!/usr/bin/env bash
# Builds local stand-ins for the base images docker-compose.yml and the Dockerfile name
# (node:20-bookworm-slim, mariadb:10.11, caddy:2): no registry is reachable here, so they
# are made from berth's debootstrap'd Debian bookworm image plus Debian packages (and this
# machine's Node 20). Each is rebuilt only when its recipe changes (a label records it).
# Prints the three image names, one per line, as NODE MARIADB CADDY.
#   usage: scripts/build-compose-standins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
base=berth/debian-sshd:bookworm
recipes=scripts/compose-standins
bash scripts/build-base-image.sh >&2

# A stand-in is current when its label matches the hash of its recipe, its build context
# and the base image.
build() {
  local name=$1 dockerfile=$2 context=$3 hash
  hash=$( (docker image inspect -f '{{.Id}}' "$base"; cat "$dockerfile"
    cd "$context" && find . -maxdepth 1 -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f '{{ index .Config.Labels "berth.standin" }}' "$name" 2>/dev/null || true) == "$hash" ]]; then return; fi
  echo "[standins] building $name (once per machine)" >&2
  # Host networking: apt-get reaches Debian's archive (the engine here gives builds no other network).
  docker build -q --network host --build-arg "BASE=$base" --label "berth.standin=$hash" -t "$name" -f "$dockerfile" "$context" \
    >/tmp/berth-standin-build.log 2>&1 || { cat /tmp/berth-standin-build.log >&2; exit 1; }
}

node_context=$(mktemp -d /tmp/berth-standin-node.XXXXXX)
trap 'rm -rf "$node_context"' EXIT
cp "$(readlink -f "$(command -v node)")" "$node_context/node"
cp -r "$(dirname "$(readlink -f "$(command -v npm)")")/.." "$node_context/npm"
cp -r "$(dirname "$(readlink -f "$(command -v node)")")/../include/node" "$node_context/include"
# The CAs this machine trusts (Debian's bundle, with any local additions).
cp /etc/ssl/certs/ca-certificates.crt "$node_context/ca-certificates.crt"

build berth-standin/node:20-bookworm-slim "$recipes/node.Dockerfile" "$node_context"
build berth-standin/mariadb:10.11 "$recipes/mariadb.Dockerfile" "$recipes"
build berth-standin/caddy:2 "$recipes/caddy.Dockerfile" "$recipes"
printf '%s\n' berth-standin/node:20-bookworm-slim berth-standin/mariadb:10.11 berth-standin/caddy:2
