#!/usr/bin/env bash
# Compiles src/ to dist/ (what `npm start` serves) when the sources changed since the last
# build; otherwise returns at once. Called after scripts/setup.sh, which generates the
# Prisma client the build compiles too.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=dist/.source-hash
hash=$( { find src -type f -name '*.ts' -print0 | sort -z | xargs -0 sha256sum; sha256sum tsconfig.json tsconfig.build.json package-lock.json; } | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$hash" ]]; then exit 0; fi
printf '[setup] compiling berth (src/ changed since the last build)\n'
rm -rf dist
node node_modules/typescript/bin/tsc -p tsconfig.build.json
echo "$hash" >"$stamp"
