#!/usr/bin/env bash
# Builds one test-host image without a registry: mmdebstrap writes a Debian
# root file system as a tar stream, `podman import` turns it into an image
# that boots systemd.
#
#   build-image.sh [--force] [--check] TAG
#
# TAG is 12, 13, 12-firewalld, 13-firewalld or 12-bare; the image is
# localhost/kuma-mesh-debian:TAG. Every image holds a local apt repository
# with the .deb files of iptables and iproute2 it installed (/opt/kuma-mesh-apt).
# A -bare image is made from its release's plain image (built first when it
# is missing or stale) without the packages of packages/bare.txt, with that
# repository as its only apt source: a host without iptables and iproute2,
# for the transparent_proxy role to install them. The image carries the label
# kuma.mesh.recipe=<sha256 of this script, the package lists and the suite>;
# the build is skipped when an image with the same label exists, unless
# --force. --check only says (exit 0: up to date, 1: needs a build).
#
# The Debian mirror is the machine's own (first `URIs:` of a non-security
# source in /etc/apt/sources.list.d/*.sources, else /etc/apt/sources.list),
# or KUMA_MESH_DEBIAN_MIRROR when set. No mirror is named here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=localhost/kuma-mesh-debian
force=0 check=0
while [ $# -gt 1 ]; do
  case $1 in
    --force) force=1 ;;
    --check) check=1 ;;
    *) echo "build-image: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
tag=${1:?usage: build-image.sh [--force] [--check] TAG}

case ${tag%%-*} in
  12) suite=bookworm ;;
  13) suite=trixie ;;
  *) echo "build-image: unknown Debian release in tag '$tag'" >&2; exit 2 ;;
esac
lists=("$here/packages/base.txt")
bare=
case $tag in
  *-firewalld) lists+=("$here/packages/firewalld.txt") ;;
  *-bare) bare=$repo:${tag%-bare}; lists+=("$here/packages/bare.txt") ;;
  *-*) echo "build-image: unknown variant in tag '$tag'" >&2; exit 2 ;;
esac

recipe_hash() {
  { echo "suite=$suite"; cat "${BASH_SOURCE[0]}" "${lists[@]}"
    # (no label when the plain image is missing: then this one is stale too)
    if [ -n "$bare" ]; then podman image inspect --format '{{index .Config.Labels "kuma.mesh.recipe"}}' "$bare" 2>/dev/null || true; fi
  } | sha256sum | cut -c1-16
}

debian_mirror() {
  if [ -n "${KUMA_MESH_DEBIAN_MIRROR:-}" ]; then echo "$KUMA_MESH_DEBIAN_MIRROR"; return; fi
  local uri=
  shopt -s nullglob
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822: blank-line separated stanzas; take URIs of a stanza with Types: deb
    # whose Suites are not (only) security suites.
    uri=$(awk '
      function flush() { if (types ~ /(^| )deb( |$)/ && suites != "" && suites !~ /^[^ ]*-security( |$)/ && uris != "" && !found) { split(uris, u, " "); print u[1]; found = 1 } types = suites = uris = "" }
      /^[ \t]*$/ { flush(); next }
      /^#/ { next }
      tolower($1) == "types:" { $1 = ""; types = substr($0, 2) }
      tolower($1) == "suites:" { $1 = ""; suites = substr($0, 2) }
      tolower($1) == "uris:" { $1 = ""; uris = substr($0, 2) }
      END { flush() }' "$f")
    [ -n "$uri" ] && break
  done
  shopt -u nullglob
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) !~ /-security$|\/updates$/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "build-image: no Debian mirror in the apt sources; set KUMA_MESH_DEBIAN_MIRROR" >&2; return 1; }
  echo "$uri"
}

image="$repo:$tag"
if [ -n "$bare" ] && [ $check = 0 ]; then "${BASH_SOURCE[0]}" "${tag%-bare}"; fi
hash=$(recipe_hash)
have=$(podman image inspect --format '{{index .Config.Labels "kuma.mesh.recipe"}}' "$image" 2>/dev/null || true)
if [ "$have" = "$hash" ] && [ $force = 0 ]; then
  [ $check = 1 ] || echo "build-image: $image is up to date (recipe $hash)"
  exit 0
fi
[ $check = 1 ] && exit 1

old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
replaced() {  # drops the image this one replaces (left untagged), unless a container uses it
  local new_id
  new_id=$(podman image inspect --format '{{.Id}}' "$image")
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
  echo "build-image: built $image in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MB", $1 / 1e6}'))"
}
start=$SECONDS
if [ -n "$bare" ]; then
  echo "build-image: building $image from $bare (recipe $hash)"
  name=kuma-mesh-build-$tag-$$
  podman rm -f "$name" >/dev/null 2>&1 || true
  trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
  left_out=$(sed -e 's/#.*//' "$here/packages/bare.txt" | tr -s ' \t\n' ' ')
  # shellcheck disable=SC2086  # the package names, one word each
  podman run --name "$name" --network none "$bare" sh -ec "
    dpkg --purge $left_out >/dev/null
    echo 'deb [trusted=yes] file:/opt/kuma-mesh-apt ./' > /etc/apt/sources.list
    rm -rf /var/lib/apt/lists/*"
  podman commit --quiet --change 'CMD ["/sbin/init"]' --change "LABEL kuma.mesh.recipe=$hash" "$name" "$image" >/dev/null
  replaced
  exit 0
fi
packages=$(sed -e 's/#.*//' "${lists[@]}" | tr -s ' \t\n' '\n' | grep -v '^$' | paste -sd, -)
mirror=$(debian_mirror)
echo "build-image: building $image ($suite, recipe $hash)"
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/kuma-mesh-image.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# --variant=minbase: Essential and Priority: required packages (passwd, so
# useradd, is one), apt, then the lists; no Recommends.
# Documentation, man pages and translations are left out (copyright files and
# locale.alias stay). The machine-id is left empty so that systemd makes one
# per container (and knows it is a first boot).
# shellcheck disable=SC2016  # "$1" is expanded by mmdebstrap's hook shell
mmdebstrap --quiet --variant=minbase --format=tar \
  --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='APT::Install-Suggests "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id && : > "$1"/etc/machine-id' \
  --customize-hook='mkdir -p "$1"/opt/kuma-mesh-apt && cp "$1"/var/cache/apt/archives/iptables_*.deb "$1"/var/cache/apt/archives/iproute2_*.deb "$1"/opt/kuma-mesh-apt/' \
  --customize-hook='chroot "$1" sh -ec "cd /opt/kuma-mesh-apt; for deb in *.deb; do dpkg-deb -f \$deb; echo Filename: ./\$deb; echo Size: \$(stat -c %s \$deb); echo SHA256: \$(sha256sum \$deb | cut -d\" \" -f1); echo; done > Packages"' \
  "$suite" "$tmp/rootfs.tar" "deb $mirror $suite main"
podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL kuma.mesh.recipe=$hash" \
  --change "LABEL kuma.mesh.suite=$suite" --quiet \
  "$tmp/rootfs.tar" "$image" >/dev/null
replaced
