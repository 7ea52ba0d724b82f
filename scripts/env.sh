# Sourced by the scripts: paths every command of this project agrees on.
# shellcheck shell=bash
KUMA_MESH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KUMA_MESH_ROOT
export KUMA_MESH_VENV="${KUMA_MESH_VENV:-$KUMA_MESH_ROOT/.venv}"
export KUMA_MESH_CACHE="${KUMA_MESH_CACHE:-$KUMA_MESH_ROOT/.cache}"
# The collection under test is linked here, beside the third-party collections
# taken from the `ansible` wheel (Galaxy is unreachable from these machines).
export ANSIBLE_COLLECTIONS_PATH="$KUMA_MESH_CACHE/collections"
export PATH="$KUMA_MESH_VENV/bin:$PATH"
# Podman settings for the container test bed (written by scripts/testbed).
export CONTAINERS_CONF="$KUMA_MESH_CACHE/containers/containers.conf"
