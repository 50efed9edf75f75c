#!/usr/bin/env bash
# Makes sure a Docker engine answers on /var/run/docker.sock, starting dockerd when it
# does not (these machines have no systemd). Bridge networking and iptables are off:
# berth's containers use host networking on loopback or no network at all.
set -euo pipefail
sock=/var/run/docker.sock
answers() { curl -sf --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; }
answers && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "[setup] the Docker engine is not running; start it as root: dockerd --bridge=none --iptables=false" >&2
  exit 1
fi
echo "[setup] starting dockerd"
mkdir -p /var/log
# The engine outlives whatever started it (a test run sets TMPDIR to its checkout's data
# directory): it keeps its own temporary files in /tmp, or every exec into a container
# fails once that checkout is gone.
TMPDIR=/tmp nohup dockerd --bridge=none --iptables=false --ip6tables=false >>/var/log/berth-dockerd.log 2>&1 &
for _ in $(seq 1 100); do answers && exit 0; sleep 0.2; done
echo "[setup] dockerd did not answer within 20 s; see /var/log/berth-dockerd.log" >&2
tail -20 /var/log/berth-dockerd.log >&2
exit 1
