#!/bin/bash
# A dockerd of kind's own, beside any other: its default runtime drops CAP_SYS_RESOURCE
# (runc-nosysresource), which kind's privileged node containers need on hosts whose bounding
# set withholds it. `hack/kind/dockerd.sh start|stop`; then DOCKER_HOST=unix:///run/docker-kind.sock.
set -o errexit -o nounset -o pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SOCK=/run/docker-kind.sock
PIDFILE=/run/docker-kind.pid
case "${1:-start}" in
  start)
    install -m 0755 "${HERE}/runc-nosysresource" /opt/kf-kind/runc-nosysresource
    if [[ -f "${PIDFILE}" ]] && kill -0 "$(cat "${PIDFILE}")" 2>/dev/null; then exit 0; fi
    mkdir -p /var/lib/docker-kind /run/docker-kind
    setsid dockerd -H "unix://${SOCK}" --config-file "${HERE}/daemon.json" \
      --data-root /var/lib/docker-kind --exec-root /run/docker-kind --pidfile "${PIDFILE}" \
      >/var/log/docker-kind.log 2>&1 </dev/null &
    for _ in $(seq 60); do docker -H "unix://${SOCK}" info >/dev/null 2>&1 && exit 0; sleep 1; done
    echo "dockerd for kind did not start; see /var/log/docker-kind.log" >&2; exit 1 ;;
  stop)
    [[ -f "${PIDFILE}" ]] && kill "$(cat "${PIDFILE}")" || true ;;
esac
