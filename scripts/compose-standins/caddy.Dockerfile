# Stand-in for caddy:2: Debian bookworm's Caddy (2.6) laid out as the official image is
# (/etc/caddy/Caddyfile, state in /data and /config).
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends caddy >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && install -d /etc/caddy /data /config
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
VOLUME /data /config
EXPOSE 80 443
WORKDIR /srv
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
