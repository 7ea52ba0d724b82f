#!/usr/bin/env bash
# Wires a test peer to a container that runs with no network: a veth pair,
# one end (peer0, 192.0.2.1/24, 2001:db8::1/64) moved into the container's
# network namespace, the other (192.0.2.2, 2001:db8::2) in a namespace of
# its own on the controller, where a service answers "peer:8080".
# TEST-NET addresses only. Run on the controller, as root.
#
#   peer.sh up CONTAINER     (again after the container restarted: a new netns)
#   peer.sh down CONTAINER
#   peer.sh exec CONTAINER CMD...   run CMD in the peer's namespace
set -euo pipefail
action=${1:?usage: peer.sh up|down|exec CONTAINER}
container=${2:?usage: peer.sh up|down|exec CONTAINER}
here=$(cd "$(dirname "$0")" && pwd)
traffic="$here/../../../tests/tools/traffic.py"
tag=$(printf %s "$container" | sha256sum | cut -c1-8)
ns="kmpeer-$tag"
pids="/run/kuma-mesh-peer-$tag.pids"

down() {
  if [ -f "$pids" ]; then xargs -r kill 2>/dev/null < "$pids" || true; rm -f "$pids"; fi
  ip netns del "$ns" 2>/dev/null || true
}

case $action in
  up)
    down
    pid=$(podman inspect -f '{{.State.Pid}}' "$container")
    ip netns add "$ns"
    ip link add "kmp$tag" type veth peer name "kmc$tag"
    ip link set "kmp$tag" netns "$ns"
    ip link set "kmc$tag" netns "$pid"
    nsenter -t "$pid" -n ip link set "kmc$tag" name peer0
    nsenter -t "$pid" -n ip addr add 192.0.2.1/24 dev peer0
    nsenter -t "$pid" -n ip -6 addr add 2001:db8::1/64 dev peer0 nodad
    nsenter -t "$pid" -n ip link set peer0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add 192.0.2.2/24 dev "kmp$tag"
    ip -n "$ns" -6 addr add 2001:db8::2/64 dev "kmp$tag" nodad
    ip -n "$ns" link set "kmp$tag" up
    for family in 4 6; do
      ip netns exec "$ns" setsid /usr/bin/python3 "$traffic" serve "$family" 8080 peer >/dev/null 2>&1 &
      echo $! >> "$pids"
    done
    ;;
  down) down ;;
  exec) shift 2; exec ip netns exec "$ns" "$@" ;;
  *) echo "peer.sh: unknown action $action" >&2; exit 2 ;;
esac
