#!/usr/bin/env bash
# Start a Docker engine for app_image(build=...) when none answers: Debian's dockerd, run by
# hand (machines without systemd), its log appended to LOGFILE.
#
#   hack/docker-engine.sh LOGFILE
#
# It runs without a bridge network or iptables rules of its own (--bridge=none
# --iptables=false): Docker's rules would set the FORWARD policy to DROP, which cuts the local
# cluster's pod traffic. Builds use the host's network instead (docker build --network host).
set -euo pipefail
log=${1:?usage: hack/docker-engine.sh LOGFILE}

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if answers; then
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "error: no Docker engine answers and dockerd is not installed (apt-get install docker.io)" >&2
  exit 1
fi
mkdir -p "$(dirname "$log")"
echo "starting dockerd (log: $log)"
setsid dockerd --bridge=none --iptables=false --ip6tables=false >>"$log" 2>&1 </dev/null &
for _ in $(seq 60); do
  if answers; then
    exit 0
  fi
  sleep 0.5
done
echo "error: dockerd did not answer within 30 s; the end of $log:" >&2
tail -n 15 "$log" >&2
exit 1
