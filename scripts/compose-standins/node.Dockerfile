# Stand-in for node:20-bookworm-slim: Debian bookworm (berth's debootstrap base) with this
# machine's Node 20 and npm, and the image's `node` user (uid 1000). It trusts the CAs this
# machine trusts, as this machine's Node does: where the way out to the npm registry
# re-signs TLS, `npm ci` in a build needs that CA too.
# Unlike the official image it has python3, make and g++: argon2's prebuilt binary crashes
# on these machines (SIGSEGV when loaded, on the host too), so npm builds it from source,
# against Node's headers (here, as on the host, from the local copy: nodejs.org is out of reach).
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 make g++ >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY include /usr/local/include/node
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm_config_nodedir=/usr/local
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
CMD ["node"]
