#!/usr/bin/env bash
# Build the Dockerfile without a Docker engine (buildah, chroot isolation, vfs storage: runs as
# root in an unprivileged sandbox, no daemon), then run docs/deploying.md's walk-through inside
# the image: tests/test_deploy_walkthrough.py with RUNBACK_TEST_IMAGE set.
#
#   scripts/container-walkthrough.sh            # build localhost/runback:walkthrough and test it
#   STANDIN_BASE=1 scripts/container-walkthrough.sh
#
# When docker.io cannot be reached (an offline sandbox), STANDIN_BASE=1 makes a stand-in for
# python:3.11-slim-bookworm from Debian bookworm's own packages (debootstrap + python3.11 +
# pip), tagged with the official name so the Dockerfile builds unchanged. It is NOT the official
# image (Debian's Python 3.11.2 in /usr/bin instead of python.org's in /usr/local): it proves the
# recipe and the app, not the official base. A TLS-intercepting proxy's CA
# (/etc/ssl/certs/ca-certificates.crt) is mounted into the build for pip, never copied in.
# Needs: apt-get install buildah (and debootstrap for the stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=docker.io/library/python:3.11-slim-bookworm
IMAGE=${IMAGE:-localhost/runback:walkthrough}
BUILDAH=(buildah --storage-driver vfs)
CA=/etc/ssl/certs/ca-certificates.crt

standin_base() {
    local root
    root=$(mktemp -d /tmp/runback-standin-XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        bookworm "$root" http://deb.debian.org/debian
    rm -f "$root"/usr/lib/python3.11/EXTERNALLY-MANAGED  # the official image has none
    ln -sf /usr/bin/python3 "$root"/usr/local/bin/python
    printf '#!/bin/sh\nexec /usr/bin/python3 -m pip "$@"\n' >"$root"/usr/local/bin/pip
    chmod 755 "$root"/usr/local/bin/pip
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$root.tar" .
    local ctr
    ctr=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$ctr" "$root.tar" /
    "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --env PIP_CERT="$CA" --cmd python3 "$ctr"
    "${BUILDAH[@]}" commit -q "$ctr" "$BASE"
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    rm -rf "$root" "$root.tar"
}

if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    if [[ "${STANDIN_BASE:-0}" == 1 ]]; then
        standin_base
    else
        "${BUILDAH[@]}" pull "$BASE"
    fi
fi

MOUNT=()
[[ -f "$CA" ]] && MOUNT=(-v "$CA:$CA:ro")
"${BUILDAH[@]}" bud --isolation chroot --pull-never "${MOUNT[@]}" -t "$IMAGE" .
RUNBACK_TEST_IMAGE="$IMAGE" python -m pytest -q -p no:cacheprovider tests/test_deploy_walkthrough.py
