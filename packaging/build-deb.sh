#!/bin/sh
# Build the Debian package mom-kvm from this checkout with the standard tools
# (dpkg-buildpackage, debhelper, dh-python/pybuild), binary only:
#   packaging/build-deb.sh [OUTDIR]        (default OUTDIR: dist/deb)
# As root on Debian it first installs what the build needs (build-essential and
# debian/control's Build-Depends). The build runs in a copy of the checkout
# (git's tracked files plus local changes), so the checkout stays clean.
# Then: apt-get install ./OUTDIR/mom-kvm_VERSION_all.deb
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
OUT=${1:-dist/deb}
case $OUT in /*) ;; *) OUT=$SRC/$OUT ;; esac

# Keep in step with debian/control's Build-Depends (tests/distro checks it).
BUILD_DEPS="build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools"

missing=""
for p in $BUILD_DEPS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "build-deb: missing build dependencies:$missing (apt-get install them as root)" >&2
        exit 1
    fi
    echo "build-deb: installing build dependencies:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mom-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The package is built from what git tracks (no .venv, caches or old builds),
# with uncommitted edits included; without git, from the tree as it is.
mkdir "$WORK/mom-kvm"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$SRC" ls-files -z --cached --others --exclude-standard |
        (cd "$SRC" && xargs -0 cp --parents -t "$WORK/mom-kvm" 2>/dev/null || true)
else
    tar -C "$SRC" --exclude=.venv --exclude=dist --exclude='*.egg-info' -cf - . | tar -C "$WORK/mom-kvm" -xf -
fi
# Files git tracks but a checkout lacks (deleted locally) are simply absent: ls-files
# lists them, cp skips them; anything the build truly needs is checked by dh.
cd "$WORK/mom-kvm"
# Debian's own python3 and tools, whatever PATH says (a pyenv or venv python would
# build against modules the package's users do not have).
env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b -us -uc >"$WORK/build.log" 2>&1 || {
    tail -n 60 "$WORK/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (last 60 lines above)" >&2
    exit 1
}
mkdir -p "$OUT"
cp "$WORK"/*.deb "$WORK"/*.buildinfo "$WORK"/*.changes "$OUT"/
for deb in "$WORK"/*.deb; do
    echo "build-deb: $OUT/$(basename "$deb")"
done
