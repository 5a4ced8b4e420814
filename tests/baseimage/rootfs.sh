#!/usr/bin/env bash
# Make a minimal Debian image from nothing (no registry is reachable): debootstrap, then docker import.
# Usage: rootfs.sh IMAGE_TAG MIRROR     (MIRROR: a Debian archive URL, as this machine's apt sources name it)
# Prints nothing on success: the caller owns stdout.
set -euo pipefail
tag=$1
mirror=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini,git,curl \
    bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import --change 'CMD ["bash"]' - "$tag" > /dev/null
