#!/usr/bin/env bash
# Serves the compiled berth (dist/, made by scripts/build.sh) as this very process: `exec`,
# so npm, a service manager, a container or the bench hold berth itself, with no wrapper
# around it. What is set here keeps the process small; bench/reads/RESULTS.md has the
# measurements behind each setting.
set -euo pipefail
cd "$(dirname "$0")/.."

# glibc raises its mmap threshold once a large block is freed (argon2 takes 19 MiB per
# hash), then serves later ones from the hashing thread's own heap and keeps them after use:
# 40-90 MB of an idle berth. A fixed threshold hands such blocks back to the kernel when freed.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072}

# V8's old generation capped at 192 MiB: under 50 connections V8 otherwise lets it grow past
# 200 MB, nearly all of it garbage (requests in flight survive into it); berth's live heap is
# about 40 MB. (Smaller semi-spaces saved another 10-20 MB, but cost the reservation list a
# third of its throughput.) Flags in NODE_OPTIONS come after this one and win.
export NODE_OPTIONS="--max-old-space-size=192${NODE_OPTIONS:+ $NODE_OPTIONS}"

exec node dist/server.js
